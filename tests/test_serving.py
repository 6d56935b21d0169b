"""The Serve application for real: Ray on loopback, three deployments, HTTP through Serve's proxy.

One module-scoped stack is shared by the tests (starting it costs tens of seconds on a small machine)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("ray.serve")

NBITS = 48
MAX_SIDE = 200  # pixel limit MAX_SIDE^2: a 256x256 image is over it, the 64x64 renders are under
MAX_BYTES = 400_000


def pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png))).astype(int)


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, s3_server):
    import os

    import torch

    from genprint.bundle import read_config, save_bundle
    from genprint.generators import load_adapter_source
    from genprint.model import GenprintModel
    from genprint.registry import Registry
    from genprint.settings import taef2_dir
    from serving.local import LocalServe
    from serving.settings import ServeSettings

    if taef2_dir() is None:
        pytest.skip("shared TAEF2 weights not found (set GENPRINT_SHARED)")
    root = tmp_path_factory.mktemp("serving")
    model = GenprintModel.create(load_adapter_source("taef2", taef2_dir()), nbits=NBITS)
    with (
        torch.no_grad()
    ):  # an untrained mapping gives every user scale 1: make users differ so mixing them can be wrong
        for affine in model.mapping.affines:
            affine.weight.normal_(0, 0.2)
    bundle = save_bundle(model, root / "bundle")
    model_id = read_config(bundle)["model_id"]
    url = f"sqlite:///{root / 'registry.db'}"
    registry = Registry(url)
    keys, codes = {}, {}
    for tenant, users in {"acme": ["alice", "bob", "carol", "dave"], "globex": ["erin"], "mods": []}.items():
        t, keys[tenant] = registry.create_tenant(tenant)
        if users:
            for user, code in registry.register_users(t, model_id, NBITS, names=users):
                codes[(tenant, user)] = code
    saved_env = dict(os.environ)
    os.environ.update(
        s3_server.env()
    )  # Ray's workers inherit the driver's environment: the ingress reads s3:// with it
    os.environ["GENPRINT_CACHE"] = str(root / "cache")
    bucket = "serving-test"
    s3_server.client().create_bucket(Bucket=bucket)
    settings = ServeSettings.load(
        {
            "model": str(bundle),
            "registry_url": url,
            "image_size": 64,
            "steps": 1,
            "max_pixels": MAX_SIDE * MAX_SIDE,
            "max_request_bytes": MAX_BYTES,
            "max_request_pixels": 4 * 64 * 64,  # four of the 64 px renders per attribution request
            "image_uri_prefixes": ["s3://serving-test/imgs/", "s3://serving-test/{tenant}/"],
            "generation_batch_size": 8,
            "batch_wait_timeout_s": 0.3,
            "moderator_tenants": ["mods"],
        }
    )
    try:
        with LocalServe(settings, port=0, ready_timeout=240) as local:
            with httpx.Client(base_url=local.url, timeout=120) as client:
                yield {
                    "client": client,
                    "keys": keys,
                    "codes": codes,
                    "model_id": model_id,
                    "registry": registry,
                    "s3": s3_server,
                    "bucket": bucket,
                }
    finally:
        os.environ.clear()
        os.environ.update(saved_env)


def generate(stack, tenant, user, seed=1, key=None, **extra):
    return stack["client"].post(
        "/v1/generate",
        json={"tenant": tenant, "user": user, "prompt": "a red bird", "seed": seed, **extra},
        headers={"X-API-Key": key or stack["keys"][tenant]},
    )


def attribute(stack, data: bytes, tenant="acme", content_type="image/png"):
    return stack["client"].post(
        "/v1/attribute", content=data, headers={"X-API-Key": stack["keys"][tenant], "Content-Type": content_type}
    )


def a_render(stack) -> bytes:
    r = generate(stack, "acme", "alice", seed=7)
    assert r.status_code == 200, r.text
    return base64.b64decode(r.json()["images"][0]["png_base64"])


def test_health_readiness_and_openapi(stack):
    c = stack["client"]
    assert c.get("/healthz").json() == {"status": "ok"}
    ready = c.get("/readyz").json()
    assert (
        ready["status"] == "ready"
        and ready["model_id"] == stack["model_id"]
        and ready["attribution"]["registered"] == 5
    )
    paths = c.get("/openapi.json").json()["paths"]
    assert {"/v1/generate", "/v1/attribute", "/v1/attribute/batch", "/v1/users", "/healthz", "/readyz"} <= set(paths)
    assert c.get("/docs").status_code == 200


def test_generate_returns_pngs_and_metadata_but_never_the_bits(stack):
    from PIL import Image

    r = generate(stack, "acme", "bob", seed=11, num_images=2)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_id"] == stack["model_id"] and body["fingerprint_id"].startswith("fp_")
    assert [im["seed"] for im in body["images"]] == [11, 12]
    for im in body["images"]:
        assert Image.open(io.BytesIO(base64.b64decode(im["png_base64"]))).size == (64, 64)
    assert stack["codes"][("acme", "bob")] not in r.text
    raw = stack["client"].post(
        "/v1/generate?format=png",
        json={"tenant": "acme", "user": "bob", "prompt": "a red bird", "seed": 11},
        headers={"X-API-Key": stack["keys"]["acme"]},
    )
    assert raw.headers["content-type"] == "image/png" and raw.headers["x-genprint-seed"] == "11"
    assert raw.headers["x-genprint-fingerprint-id"] == body["fingerprint_id"]
    # same seed, same user: the same image (up to 1/255 of rounding: a batch of 2 vs 1 may sum convs in another order)
    assert np.abs(pixels(raw.content) - pixels(base64.b64decode(body["images"][0]["png_base64"]))).max() <= 1


def test_users_batched_together_match_users_decoded_one_by_one(stack):
    from ray import serve

    users = ["alice", "bob", "carol", "dave"]
    alone = {u: generate(stack, "acme", u, seed=100 + i).json() for i, u in enumerate(users)}
    handle = serve.get_deployment_handle("generation", app_name="genprint")
    before = handle.info.remote().result()["batches"]
    together: dict[str, dict] = {}

    def call(i, u):
        together[u] = generate(stack, "acme", u, seed=100 + i).json()

    threads = [threading.Thread(target=call, args=(i, u)) for i, u in enumerate(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    info = handle.info.remote().result()
    assert info["largest_batch"] >= 2 and info["batches"] - before < len(users), (
        "the concurrent requests were not batched"
    )

    def image(body):
        return pixels(base64.b64decode(body["images"][0]["png_base64"]))

    for u in users:
        assert np.abs(image(together[u]) - image(alone[u])).max() <= 1, (
            u
        )  # batched convs may round differently by 1/255
    # and the fingerprints really differ: one user's image is not another's
    assert np.abs(image(alone["alice"]) - image(generate(stack, "acme", "bob", seed=100).json())).max() > 8


BAD_INPUTS = [
    ("not an image", b"hello, this is text", "image/png", 422, "not a PNG, JPEG or WebP"),
    ("truncated png", "truncated", "image/png", 422, "truncated"),
    ("over the pixel limit", "big", "image/png", 422, "exceeds the limit"),
    ("wrong content type", "good", "text/plain", 415, "unsupported content type"),
    ("json instead of image", b'{"a": 1}', "application/json", 415, "unsupported content type"),
    ("body too large", b"\0" * (MAX_BYTES + 10), "image/png", 413, "exceeds the limit"),
    ("empty multipart", b"--x--\r\n", "multipart/form-data; boundary=x", 422, "exactly one file"),
]


@pytest.mark.parametrize("name,data,content_type,status,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_images_are_4xx_with_a_clear_message_and_the_replica_keeps_serving(
    stack, name, data, content_type, status, message
):
    good = a_render(stack)
    data = {"truncated": good[: len(good) // 2], "big": png_bytes(np.zeros((256, 256, 3), np.uint8)), "good": good}.get(
        data, data
    )
    r = attribute(stack, data, content_type=content_type)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    after = attribute(stack, good)
    assert after.status_code == 200 and after.json()["model_id"] == stack["model_id"]


def test_multipart_upload_is_attributed(stack):
    good = a_render(stack)
    r = stack["client"].post(
        "/v1/attribute", files={"image": ("a.png", good, "image/png")}, headers={"X-API-Key": stack["keys"]["acme"]}
    )
    assert r.status_code == 200, r.text
    assert r.json() == attribute(stack, good).json()


@pytest.mark.parametrize(
    "headers,detail",
    [
        ({}, "API key is required"),
        ({"X-API-Key": "nope"}, "invalid API key"),
        ({"Authorization": "Bearer nope"}, "invalid API key"),
    ],
)
def test_missing_or_wrong_api_key_is_401(stack, headers, detail):
    for r in (
        stack["client"].post("/v1/attribute", content=b"x", headers={"Content-Type": "image/png", **headers}),
        stack["client"].post("/v1/generate", json={"tenant": "acme", "user": "alice", "prompt": "p"}, headers=headers),
    ):
        assert r.status_code == 401 and detail in r.json()["detail"]
    assert generate(stack, "acme", "alice").status_code == 200


def test_a_tenant_acts_only_for_its_own_users(stack):
    r = generate(stack, "globex", "erin", key=stack["keys"]["acme"])
    assert r.status_code == 403 and "belongs to tenant 'acme'" in r.json()["detail"]
    r = generate(stack, "acme", "erin")  # globex's user, named under acme: looks like no such user (no existence leak)
    assert r.status_code == 404 and "has no user 'erin'" in r.json()["detail"]
    c, keys = stack["client"], stack["keys"]
    assert c.get("/v1/users", params={"tenant": "globex"}, headers={"X-API-Key": keys["acme"]}).status_code == 403
    own = c.get("/v1/users", headers={"X-API-Key": keys["acme"]}).json()
    assert [u["user"] for u in own] == ["alice", "bob", "carol", "dave"] and all("code" not in u for u in own)
    assert [
        u["user"] for u in c.get("/v1/users", params={"tenant": "globex"}, headers={"X-API-Key": keys["mods"]}).json()
    ] == ["erin"]
    # attribution is scoped: whatever acme's query matches is an acme user; a moderator's may be anyone's
    good = a_render(stack)
    assert attribute(stack, good, tenant="acme").json()["tenant"] == "acme"
    assert attribute(stack, good, tenant="globex").json()["tenant"] == "globex"
    assert generate(stack, "acme", "alice").status_code == 200


def test_a_revoked_user_may_no_longer_generate(stack):
    reg = stack["registry"]
    globex = reg.tenant("globex")
    reg.register_users(globex, stack["model_id"], NBITS, names=["zed"])
    assert generate(stack, "globex", "zed").status_code == 200
    reg.revoke(globex, "zed", reason="test")
    r = generate(stack, "globex", "zed")
    assert r.status_code == 403 and "revoked" in r.json()["detail"]
    assert generate(stack, "globex", "erin").status_code == 200


def test_json_batch_of_base64_and_s3_images_with_per_item_errors(stack):
    good = a_render(stack)
    stack["s3"].client().put_object(Bucket=stack["bucket"], Key="imgs/a.png", Body=good)
    items = [
        {"id": "b64", "base64": base64.b64encode(good).decode()},
        {"id": "s3", "uri": f"s3://{stack['bucket']}/imgs/a.png"},
        {"id": "missing", "uri": f"s3://{stack['bucket']}/imgs/none.png"},
        {"id": "elsewhere", "uri": f"s3://{stack['bucket']}/private/a.png"},
        {"id": "escape", "uri": f"s3://{stack['bucket']}/imgs/../private/a.png"},
        {"id": "junk", "base64": "@@@"},
        {"id": "both", "base64": "AA==", "uri": "s3://x/y"},
    ]
    r = stack["client"].post(
        "/v1/attribute/batch", json={"images": items}, headers={"X-API-Key": stack["keys"]["acme"]}
    )
    assert r.status_code == 200, r.text
    res = {x["id"]: x for x in r.json()["results"]}
    assert res["b64"]["result"] == res["s3"]["result"] == attribute(stack, good).json()
    # a missing key and an unreadable one read alike (nothing says whether a key exists); outside the prefixes: 403
    assert res["missing"]["status"] == 422 and res["missing"]["error"] == f"missing: cannot read {items[2]['uri']}"
    assert (
        res["elsewhere"]["status"] == res["escape"]["status"] == 403
        and "configured prefixes" in res["elsewhere"]["error"]
    )
    assert res["junk"]["status"] == 422 and "not valid base64" in res["junk"]["error"]
    assert res["both"]["status"] == 422 and "exactly one" in res["both"]["error"]
    bad = stack["client"].post(
        "/v1/attribute/batch",
        content=b"[1,2",
        headers={"X-API-Key": stack["keys"]["acme"], "Content-Type": "application/json"},
    )
    assert bad.status_code == 422 and "must be JSON" in bad.json()["detail"]


def test_a_request_holds_a_bounded_number_of_pixels(stack):
    """A batch's images together decode to at most max_request_pixels: the ones beyond it are refused (413)."""
    good = base64.b64encode(a_render(stack)).decode()
    r = stack["client"].post(
        "/v1/attribute/batch",
        json={"images": [{"id": str(i), "base64": good} for i in range(6)]},
        headers={"X-API-Key": stack["keys"]["acme"]},
    )
    assert r.status_code == 200, r.text
    statuses = [x["status"] for x in r.json()["results"]]
    assert statuses == [200] * 4 + [413] * 2, statuses


def test_generate_bounds_its_body_and_a_bad_prompt_fails_alone(stack):
    """A body over the limit is refused before it is read in full; a prompt that cannot be encoded fails its own
    request (422) and the requests sent with it still generate."""
    big = b'{"tenant": "acme", "user": "alice", "prompt": "' + b"a" * MAX_BYTES + b'"}'
    r = stack["client"].post(
        "/v1/generate", content=big, headers={"X-API-Key": stack["keys"]["acme"], "Content-Type": "application/json"}
    )
    assert r.status_code == 413, r.text
    prompts = ["a red bird", "\ud800", "a blue bird", "a green bird"]
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda p: stack["client"].post(
                    "/v1/generate",
                    content=json.dumps({"tenant": "acme", "user": "alice", "prompt": p, "seed": 3}),
                    headers={"X-API-Key": stack["keys"]["acme"], "Content-Type": "application/json"},
                ),
                prompts,
            )
        )
    assert [a.status_code for a in answers] == [200, 422, 200, 200], [a.text[:200] for a in answers]
    assert "Invalid JSON" in answers[1].json()["detail"], answers[1].text  # a lone surrogate is no JSON string


def test_a_job_that_breaks_generation_fails_alone_in_its_batch(untrained_bundle_dir):
    """The engine (no Ray): when a batch fails, each job is tried alone, so only the breaking one fails."""
    from serving.generation import GeneratedImage, GenerationEngine, GenerationFailed, GenerationJob
    from serving.settings import ServeSettings

    engine = GenerationEngine(ServeSettings(model=str(untrained_bundle_dir), image_size=64, steps=1, device="cpu"))
    latents = engine.latents

    def fragile(jobs):
        if any(job.prompt == "boom" for job in jobs):
            raise ValueError("the tokenizer refuses this prompt")
        return latents(jobs)

    engine.latents = fragile
    jobs = [GenerationJob(p, 1, "fp", "ab" * 6) for p in ("a cat", "boom", "a dog")]
    results = engine.generate_each(jobs)
    assert [type(r) for r in results] == [GeneratedImage, GenerationFailed, GeneratedImage]
    assert "tokenizer refuses" in results[1].message


def test_killed_replica_under_load_recovers(stack):
    import ray

    good = a_render(stack)
    statuses: list[int] = []
    stop = threading.Event()

    def load():
        with httpx.Client(base_url=str(stack["client"].base_url), timeout=120) as c:
            while not stop.is_set():
                statuses.append(
                    c.post(
                        "/v1/attribute",
                        content=good,
                        headers={"X-API-Key": stack["keys"]["acme"], "Content-Type": "image/png"},
                    ).status_code
                )

    def replicas():  # live attribution replica actors of this cluster
        return {
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and "#attribution#" in a["name"]
        }

    workers = [threading.Thread(target=load) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        time.sleep(1.0)
        (victim,) = replicas()
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not replicas() or replicas() == {victim}):
            time.sleep(0.5)
        recovered = 0
        while time.monotonic() < deadline and recovered < 3:
            recovered = recovered + 1 if attribute(stack, good).status_code == 200 else 0
            time.sleep(0.2)
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert victim not in replicas() and len(replicas()) == 1
    assert recovered == 3, "attribution did not recover after its replica was killed"
    assert set(statuses) <= {200, 503}, f"unexpected statuses under failure: {sorted(set(statuses))}"


def test_the_attribution_engine_can_read_with_the_inversion_reader(tmp_path, readable_bundle):
    """`reader: inversion` swaps the ONNX extractor for the inversion reader (no Ray around the engine here): a render
    for one user is attributed to that user, and the original decoder's output to nobody."""
    from genprint.bundle import read_config
    from genprint.registry import Registry
    from serving.attribution import AttributionEngine
    from serving.settings import ServeSettings

    bundle, render = readable_bundle
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    tenant, _ = registry.create_tenant("acme")
    codes = dict(registry.register_users(tenant, read_config(bundle)["model_id"], NBITS, names=["alice", "bob"]))
    engine = AttributionEngine(
        ServeSettings(model=str(bundle), reader="inversion", inversion_steps=60, device="cpu"), registry
    )
    assert engine.info()["runtime"] == ["inversion (cpu)"]
    marked, unmarked, again = engine.attribute(
        [(render(codes["bob"]), None), (render(None), None), (render(codes["bob"]), None)]
    )
    assert marked["attributed"] and marked["user"] == "bob", marked
    assert not unmarked["attributed"], unmarked  # (the answer still names the nearest user, with its distance)
    # The same upload again, in the batch and later, is matched from the read cache: same answer, no new read.
    assert again == marked and engine.info()["read_cache"] == {"size": 2, "hits": 1}
    assert engine.attribute([(render(None), None)]) == [unmarked] and engine.info()["read_cache"]["hits"] == 2


def test_the_cascades_band_is_a_serving_setting_checked_on_load(untrained_bundle_dir, tmp_path):
    from genprint.errors import GenprintError
    from genprint.registry import Registry
    from serving.attribution import AttributionEngine
    from serving.settings import ServeSettings

    with pytest.raises(GenprintError, match="escalate_p"):
        ServeSettings.load({"escalate_p": 1.5})
    settings = ServeSettings.load(
        {"model": str(untrained_bundle_dir), "reader": "cascade", "escalate_p": 0.2, "device": "cpu"}
    )
    engine = AttributionEngine(settings, Registry(f"sqlite:///{tmp_path / 'registry.db'}"))
    assert engine.attributor.escalate_p == 0.2 and engine.attributor.escalation is not None


def test_the_photos_pipeline_renders_a_photo_chosen_by_prompt_and_seed(untrained_bundle_dir):
    """`pipeline: photos` (no Ray around the engine): each render is one of the photos through the decoder, the same
    request gets the same photo, and another seed another one."""
    import torch

    from genprint.data import resolve_photos
    from genprint.metrics import psnr
    from serving.generation import GenerationEngine, GenerationJob
    from serving.settings import ServeSettings
    from serving.text_to_image import PhotoPipeline

    engine = GenerationEngine(
        ServeSettings(model=str(untrained_bundle_dir), pipeline="photos", image_size=128, device="cpu")
    )
    assert engine.info()["pipeline"] == "photos"
    jobs = [GenerationJob("a red fox in snow", seed, f"fp{seed}", "ab" * 6) for seed in (1, 2, 1)]
    first, second, again = (pixels(g.png) for g in engine.generate(jobs))
    assert first.shape == (128, 128, 3) and (first == again).all() and not (first == second).all()
    render = torch.from_numpy(first.astype(np.float32) / 255).permute(2, 0, 1)[None]
    scores = sorted(psnr(render, PhotoPipeline.fitted(p, 128, 128)[None]).item() for p in resolve_photos(None))
    assert scores[-1] > 22 and scores[-1] - scores[-2] > 5, scores[-3:]  # the decoder's re-rendering of one photo


def test_genprint_serve_shuts_down_cleanly_on_sigterm(untrained_bundle_dir, tmp_path):
    """SIGTERM (what Kubernetes and systemd send) stops Serve and Ray, leaves no Ray process behind and removes
    Ray's temp dir, which lives under $TMPDIR."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from pipelines.ray_runtime import free_port

    short = Path(tempfile.mkdtemp(prefix="s", dir="/tmp"))  # Ray's socket paths under it must stay short
    env = {**os.environ, "TMPDIR": str(short), "GENPRINT_HOME": str(tmp_path / "home")}
    env.pop("GENPRINT_RAY_TMP", None)
    argv = [
        sys.executable,
        "-m",
        "genprint",
        "serve",
        "--model",
        str(untrained_bundle_dir),
        "--port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
        "--image-size",
        "64",
        "--steps",
        "1",
    ]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "SIGTERM stops it" in line:
                break
        assert proc.poll() is None, "".join(lines)
        ray_dirs = list((short / f"rt-{os.getuid()}").iterdir())
        assert ray_dirs, "Ray's temp dir is under $TMPDIR"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not any(d.exists() for d in ray_dirs)
    leftovers = subprocess.run(["pgrep", "-f", str(ray_dirs[0])], capture_output=True, text=True).stdout.split()
    assert not leftovers, f"Ray processes left behind: {leftovers}"
    bad = subprocess.run([*argv[:4], "--model", str(short / "nowhere")], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "no bundle directory" in bad.stderr and "Traceback" not in bad.stderr


def test_a_collection_is_attributed_as_one_query(stack):
    good = base64.b64encode(a_render(stack)).decode()
    headers = {"X-API-Key": stack["keys"]["acme"]}
    before = len(stack["registry"].audit_log(action="attribute.collection", limit=1000))
    r = stack["client"].post("/v1/attribute/collection", json={"images": [{"base64": good}] * 3}, headers=headers)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["images"] == 3 and answer["rule"] == "soft" and answer["model_id"] == stack["model_id"]
    assert len(stack["registry"].audit_log(action="attribute.collection", limit=1000)) == before + 1
    bad = stack["client"].post(
        "/v1/attribute/collection", json={"images": [{"base64": good}, {"base64": "@@"}]}, headers=headers
    )
    assert bad.status_code == 422 and "not valid base64" in bad.json()["detail"]  # attributed whole or not at all
