#!/usr/bin/env python3
"""Attribute every image under a folder or an S3 prefix with Ray Data, writing Parquet as it goes.

    python -m pipelines.bulk_attribute SOURCE OUT [--model BUNDLE] [--registry URL] [--tenant NAME] [--batch 32]
        [--actors 2] [--reader inversion|cascade] [--escalate-p 0.01]

SOURCE: a local folder or s3://bucket/prefix (PNG, JPEG and WebP files, recursively). OUT: a local folder or
s3://bucket/prefix that receives Parquet files, block by block as they are read. One row per image: path, attributed,
tenant, user, fingerprint_id, revoked, distance, p_value, runner_up_distance, model_id, error (set, and the rest
empty, for a file that is not a usable image: one bad file never stops the job). Re-running the same job resumes it:
images that already have a row in OUT are skipped. Actors each hold one genprint.attribution.Attributor (an ONNX
Runtime session, or with --reader inversion the inversion reader, on a GPU each when the cluster has them).
"""

from __future__ import annotations

import argparse
import logging
import sys

from genprint.errors import GenprintError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
# The output columns and their Arrow types: fixed, so a block whose column is all empty is not typed null and every
# Parquet file has the one schema.
FIELDS = [
    ("path", "string"),
    ("attributed", "bool"),
    ("tenant", "string"),
    ("user", "string"),
    ("fingerprint_id", "string"),
    ("revoked", "bool"),
    ("distance", "int64"),
    ("p_value", "float64"),
    ("runner_up_distance", "int64"),
    ("model_id", "string"),
    ("error", "string"),
]
COLUMNS = [name for name, _ in FIELDS]
log = logging.getLogger(__name__)


class Attribute:
    """A Ray Data actor: decode a batch of files, read their bits in one reader call per size, match in the registry."""

    def __init__(
        self, bundle: str, registry_url: str, reader: str, tenant: str | None, max_pixels: int, escalate_p: float
    ):
        import pyarrow as pa

        from genprint.allocator import keep_freed_memory
        from genprint.attribution import make_attributor
        from genprint.registry import Registry

        keep_freed_memory()
        self.attributor = make_attributor(bundle, reader, Registry(registry_url or None), escalate_p=escalate_p)
        self.scope = self.attributor.registry.tenant(tenant) if tenant else None
        self.max_pixels = max_pixels
        self.schema = pa.schema(FIELDS)

    def __call__(self, batch: dict):
        import pyarrow as pa

        from genprint.attribution import public_answer
        from genprint.imageio import decode_image_bytes

        rows: list[dict] = []
        good, images = [], []
        for i, (path, data) in enumerate(zip(batch["path"], batch["bytes"])):
            rows.append(dict.fromkeys(COLUMNS) | {"path": str(path), "model_id": self.attributor.model_id})
            try:
                images.append(decode_image_bytes(data, max_pixels=self.max_pixels, name=str(path)).numpy())
                good.append(i)
            except GenprintError as exc:
                rows[i]["error"] = str(exc)
        if good:
            answers = self.attributor.attribute(
                images, [self.scope] * len(images), labels=[rows[i]["path"] for i in good]
            )
            for i, a in zip(good, answers):
                rows[i].update({k: v for k, v in public_answer(a, self.attributor.nbits).items() if k in COLUMNS})
        return pa.Table.from_pylist(rows, schema=self.schema)


def _images(source: str) -> list[str]:
    """Every image file under `source`, as the paths Ray Data reports them (bucket/key for S3)."""
    import pyarrow.fs as pafs

    from pipelines.ray_runtime import location

    root, filesystem = location(source)
    filesystem = filesystem or pafs.LocalFileSystem()
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    except (FileNotFoundError, OSError) as exc:
        raise GenprintError(f"cannot list images under {source}: {str(exc).splitlines()[0]}") from None
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.lower().endswith(EXTENSIONS))


def _done(out: str) -> set[str]:
    """Paths that already have a row in OUT (from an earlier, interrupted run of the job). A Parquet file cut short by
    the interruption is moved aside (`_incomplete-NAME`, which readers of the folder skip) and its images run again."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from pipelines.ray_runtime import location

    root, filesystem = location(out)
    filesystem = filesystem or pafs.LocalFileSystem()
    if filesystem.get_file_info(root).type != pafs.FileType.Directory:
        return set()
    done: set[str] = set()
    for info in filesystem.get_file_info(pafs.FileSelector(root)):
        if info.type != pafs.FileType.File or not info.base_name.endswith(".parquet") or info.base_name[0] in "._":
            continue
        try:
            done.update(pq.read_table(info.path, columns=["path"], filesystem=filesystem)["path"].to_pylist())
        except (OSError, ValueError, KeyError):
            log.warning("%s is incomplete (an interrupted run): its images will be attributed again", info.path)
            filesystem.move(info.path, f"{root}/_incomplete-{info.base_name}")
    return done


def bulk_attribute(
    source: str,
    out: str,
    model: str | None = None,
    registry_url: str = "",
    tenant: str | None = None,
    batch_size: int = 32,
    actors: int = 1,
    max_pixels: int | None = None,
    reader: str = "cnn",
    escalate_p: float | None = None,
) -> int:
    """Run the job on the current Ray cluster (or a local one); returns the number of rows written by this run."""
    import ray

    from genprint.attribution import ESCALATE_P, READERS, check_escalate_p
    from genprint.imageio import DEFAULT_MAX_PIXELS
    from pipelines.ray_runtime import location
    from pipelines.tracking import resolve_model

    if reader not in READERS:
        raise GenprintError(f"unknown reader {reader!r}; known: {', '.join(READERS)}")
    escalate_p = check_escalate_p(ESCALATE_P if escalate_p is None else escalate_p)  # before any work
    bundle = str(resolve_model(model))
    done = _done(out)
    pending = [p for p in _images(source) if p not in done]
    if not pending:
        log.info("every image under %s already has a row in %s (%d)", source, out, len(done))
        return 0
    if done:
        log.info("resuming: %d images already attributed in %s, %d to go", len(done), out, len(pending))
    _, src_fs = location(source)
    dst, dst_fs = location(out)
    ds = ray.data.read_binary_files(pending, include_paths=True, filesystem=src_fs)
    # The inversion reader decodes through the model at every step: a GPU per actor where the cluster has them.
    gpus = 1 if reader in ("inversion", "cascade") and ray.cluster_resources().get("GPU") else 0
    options = {
        "bundle": bundle,
        "registry_url": registry_url,
        "reader": reader,
        "tenant": tenant,
        "max_pixels": max_pixels or DEFAULT_MAX_PIXELS,
        "escalate_p": escalate_p,
    }
    results = ds.map_batches(
        Attribute,
        fn_constructor_kwargs=options,
        batch_size=batch_size,
        concurrency=actors,
        num_gpus=gpus,
        batch_format="default",
    )
    results.write_parquet(dst, filesystem=dst_fs)  # streamed: each block is written as soon as it is attributed
    return len(_done(out)) - len(done)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="folder or s3://bucket/prefix of images")
    parser.add_argument("out", help="folder or s3://bucket/prefix for the Parquet output")
    parser.add_argument(
        "--model", help="bundle directory, s3://... or models:/NAME@ALIAS (default: genprint's shipped bundle)"
    )
    parser.add_argument(
        "--registry", default="", help="registry URL (default: $GENPRINT_DB or $GENPRINT_HOME/registry.db)"
    )
    parser.add_argument("--tenant", help="only this tenant's users are candidates (default: every tenant)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--actors", type=int, default=1, help="attribution actors (each one reader)")
    parser.add_argument(
        "--reader",
        choices=["cnn", "inversion", "cascade"],
        default="cnn",
        help="cnn: the ONNX extractor (high rate); inversion: the forensic reader (far more bits, slow)",
    )
    parser.add_argument(
        "--escalate-p",
        type=float,
        help="cascade: CNN reads left unattributed with a corrected p-value up to this are read again by the "
        "inversion reader; unmarked images escalate at this rate, so it sets the cost (default 0.01)",
    )
    args = parser.parse_args(argv)
    from pipelines.ray_runtime import RayRuntime

    try:
        with RayRuntime():
            n = bulk_attribute(
                args.source,
                args.out,
                args.model,
                args.registry,
                args.tenant,
                args.batch,
                args.actors,
                reader=args.reader,
                escalate_p=args.escalate_p,
            )
    except GenprintError as exc:
        print(f"bulk_attribute: error: {exc}", file=sys.stderr)
        return 2
    print(f"attributed {n} images -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
