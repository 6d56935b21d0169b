"""pipelines/bulk_attribute.py on real Ray Data, reading a folder and an S3 prefix (SeaweedFS), writing Parquet."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

pytest.importorskip("ray.data")
NBITS = 48


@pytest.fixture(scope="module")
def setup(tmp_path_factory, untrained_bundle_dir, s3_server):
    from PIL import Image

    from genprint.bundle import read_config
    from genprint.registry import Registry
    from pipelines.ray_runtime import RayRuntime

    root = tmp_path_factory.mktemp("bulk")
    model_id = read_config(untrained_bundle_dir)["model_id"]
    url = f"sqlite:///{root / 'registry.db'}"
    registry = Registry(url)
    acme, _ = registry.create_tenant("acme")
    registry.register_users(acme, model_id, NBITS, names=["alice", "bob"])
    globex, _ = registry.create_tenant("globex")
    registry.register_users(globex, model_id, NBITS, names=["carol"])
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "sub/b.png"):
        Image.fromarray(rng.integers(0, 255, (96, 80, 3), np.uint8)).save(images / name)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(buf, format="JPEG")
    (images / "c.jpg").write_bytes(buf.getvalue())
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (images / "notes.txt").write_text("not an image, and not listed")
    saved = dict(os.environ)
    os.environ.update(s3_server.env() | {"GENPRINT_CACHE": str(root / "cache")})  # Ray workers inherit this
    try:
        with RayRuntime(cpus=2, log_to_driver=False):
            yield {
                "root": root,
                "images": images,
                "bundle": str(untrained_bundle_dir),
                "registry": url,
                "s3": s3_server,
                "model_id": model_id,
            }
    finally:
        os.environ.clear()
        os.environ.update(saved)


def read_rows(path, filesystem=None) -> dict[str, dict]:
    import pyarrow.dataset as pads

    table = pads.dataset(path, format="parquet", filesystem=filesystem).to_table()
    return {os.path.basename(r["path"]): r for r in table.to_pylist()}


def test_folder_to_parquet_one_row_per_image_bad_files_flagged(setup):
    import pyarrow.parquet as pq

    from pipelines.bulk_attribute import COLUMNS, FIELDS, bulk_attribute

    out = setup["root"] / "out-local"
    n = bulk_attribute(str(setup["images"]), str(out), setup["bundle"], setup["registry"], batch_size=2)
    # every file has the one schema, whatever its rows hold (a block of only good images has no error text)
    for file in out.glob("*.parquet"):
        assert [(f.name, str(f.type)) for f in pq.read_schema(file)] == [
            (c, t.replace("float64", "double")) for c, t in FIELDS
        ]
    rows = read_rows(str(out))
    assert n == 4 and set(rows) == {"a.png", "b.png", "c.jpg", "broken.png"}
    assert set(next(iter(rows.values()))) == set(COLUMNS)
    assert "not a PNG, JPEG or WebP" in rows["broken.png"]["error"] and rows["broken.png"]["attributed"] is None
    for name in ("a.png", "b.png", "c.jpg"):
        r = rows[name]
        assert r["error"] is None and r["model_id"] == setup["model_id"] and 0 <= r["distance"] <= NBITS
        assert r["user"] in {"alice", "bob", "carol"} and r["fingerprint_id"].startswith(
            "fp_"
        )  # nearest, attributed or not


def test_s3_prefix_to_s3_parquet_scoped_to_one_tenant(setup):
    import pyarrow.fs  # noqa: F401

    from pipelines.bulk_attribute import bulk_attribute
    from pipelines.ray_runtime import s3_filesystem

    client = setup["s3"].client()
    client.create_bucket(Bucket="bulk-in")
    for path in setup["images"].rglob("*"):
        if path.is_file():
            client.put_object(
                Bucket="bulk-in", Key=f"batch1/{path.relative_to(setup['images'])}", Body=path.read_bytes()
            )
    n = bulk_attribute(
        "s3://bulk-in/batch1", "s3://bulk-in/results", setup["bundle"], setup["registry"], tenant="globex"
    )
    assert n == 4
    rows = read_rows("bulk-in/results", s3_filesystem())
    assert {r["tenant"] for name, r in rows.items() if name != "broken.png"} == {"globex"}


def test_unknown_source_is_a_clear_error(setup):
    from genprint.errors import GenprintError
    from pipelines.bulk_attribute import bulk_attribute

    with pytest.raises(GenprintError, match="cannot list images"):
        bulk_attribute(str(setup["root"] / "nowhere"), str(setup["root"] / "x"), setup["bundle"], setup["registry"])
    with pytest.raises(GenprintError, match="escalate_p must be a probability"):
        bulk_attribute(
            str(setup["images"]), str(setup["root"] / "x"), setup["bundle"], reader="cascade", escalate_p=1.5
        )


def test_the_inversion_reader_attributes_in_the_actors(setup, readable_bundle):
    from PIL import Image

    from genprint.bundle import read_config
    from genprint.registry import Registry
    from pipelines.bulk_attribute import bulk_attribute

    bundle, render = readable_bundle
    url = f"sqlite:///{setup['root'] / 'readable.db'}"
    acme, _ = Registry(url).create_tenant("acme")
    codes = dict(Registry(url).register_users(acme, read_config(bundle)["model_id"], NBITS, names=["alice", "bob"]))
    images = setup["root"] / "readable"
    images.mkdir()
    for name, code in (("bob.png", codes["bob"]), ("original.png", None)):
        Image.fromarray((render(code).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)).save(images / name)
    assert bulk_attribute(str(images), str(setup["root"] / "readable-out"), str(bundle), url, reader="inversion") == 2
    rows = read_rows(str(setup["root"] / "readable-out"))
    assert rows["bob.png"]["attributed"] and rows["bob.png"]["user"] == "bob", rows["bob.png"]
    assert not rows["original.png"]["attributed"], rows["original.png"]


def test_a_rerun_resumes_where_the_job_stopped(setup):
    """Rows are written as blocks finish; a job that stopped part-way is run again and attributes only the rest."""
    import shutil as sh

    from pipelines.bulk_attribute import bulk_attribute

    images = setup["root"] / "resume-in"
    images.mkdir()
    for name in ("a.png", "c.jpg"):
        sh.copy(setup["images"] / name, images / name)
    out = setup["root"] / "resume-out"
    assert bulk_attribute(str(images), str(out), setup["bundle"], setup["registry"], batch_size=1) == 2
    first = {p.name for p in out.glob("*.parquet")}
    cut = next(iter(sorted(out.glob("*.parquet"))))
    (out / "cut-short.parquet").write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # a run killed mid-write
    (images / "sub").mkdir()
    sh.copy(setup["images"] / "sub" / "b.png", images / "sub" / "b.png")  # what the stopped job had not reached
    assert bulk_attribute(str(images), str(out), setup["bundle"], setup["registry"]) == 1
    assert first <= {p.name for p in out.glob("*.parquet")}  # earlier output kept as it was
    assert (out / "_incomplete-cut-short.parquet").exists()  # moved aside, where readers of the folder skip it
    import pyarrow.dataset as pads

    paths = pads.dataset(str(out), format="parquet").to_table(columns=["path"])["path"].to_pylist()
    assert sorted(os.path.basename(p) for p in paths) == ["a.png", "b.png", "c.jpg"]  # each image once
    assert bulk_attribute(str(images), str(out), setup["bundle"], setup["registry"]) == 0
