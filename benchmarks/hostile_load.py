#!/usr/bin/env python3
"""Hostile and normal traffic together, on loopback: does every normal request get its right answer, does memory stay
bounded, does the service stay up?

    python benchmarks/hostile_load.py [--seconds 60] [--model BUNDLE]

Starts the whole Serve application (serving.local.LocalServe) with three tenants, renders an image per user, and
reads each render's answer alone first (the baseline). Then, for --seconds, normal clients of the three tenants
attribute their users' renders and generate images while hostile clients send what an attacker would: bodies over
the size limit, PNGs whose header claims 4096 x 4096 pixels, batches of large images, malformed multipart forms,
wrong and other tenants' keys, s3:// URIs outside the configured prefixes, prompts that are not Unicode, garbage.
Reports every normal request that got another status or answer than its baseline (the goal: none), the answers the
hostile requests got, and the peak resident memory of the Serve replicas (sampled every 0.5 s) against the bound the
settings imply. Writes benchmarks/results/hostile_load.json.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from _results import write_result

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TENANTS = {"acme": ["alice", "bob"], "globex": ["carol", "dave"], "initech": ["erin", "frank"]}
MAX_BYTES = 2 << 20
MAX_PIXELS = 1024 * 1024
REQUEST_PIXELS = 4 * 256 * 256
INFLIGHT_PIXELS = 16 * 256 * 256


def replica_rss_mib() -> float:
    """Resident memory of the Serve replicas and proxy (processes named ray::ServeReplica / ProxyActor)."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"ServeReplica" not in cmd and b"ProxyActor" not in cmd:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def pixel_bomb(side: int = 4096) -> bytes:
    """A real PNG of side x side black pixels: tens of kB that would decode to side^2 x 12 bytes of float32."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def hostile_requests(keys: dict, render: bytes) -> list[tuple[str, str, dict]]:
    """(kind, path, httpx keyword arguments) of each hostile request."""
    acme = {"X-API-Key": keys["acme"]}
    big_png = base64.b64encode(pixel_bomb()).decode()
    render64 = base64.b64encode(render).decode()
    return [
        (
            "body over the limit",
            "/v1/generate",
            {"content": b"x" * (MAX_BYTES + 1), "headers": {**acme, "Content-Type": "application/json"}},
        ),
        (
            "pixel bomb",
            "/v1/attribute",
            {"content": pixel_bomb(), "headers": {**acme, "Content-Type": "image/png"}},
        ),
        (
            "batch of large images",
            "/v1/attribute/batch",
            {"json": {"images": [{"base64": big_png}] * 32}, "headers": acme},
        ),
        (
            "batch over the pixel budget",
            "/v1/attribute/batch",
            {"json": {"images": [{"base64": render64}] * 12}, "headers": acme},
        ),
        (
            "malformed multipart",
            "/v1/attribute",
            {"content": b"--x\r\nbroken", "headers": {**acme, "Content-Type": "multipart/form-data; boundary=x"}},
        ),
        (
            "wrong key",
            "/v1/attribute",
            {"content": render, "headers": {"X-API-Key": "gpk_wrong", "Content-Type": "image/png"}},
        ),
        (
            "another tenant's user",
            "/v1/generate",
            {"json": {"tenant": "globex", "user": "carol", "prompt": "x"}, "headers": acme},
        ),
        (
            "s3 outside the prefixes",
            "/v1/attribute/batch",
            {"json": {"images": [{"uri": "s3://private/secret.png"}]}, "headers": acme},
        ),
        (
            "prompt that is not Unicode",
            "/v1/generate",
            {
                "content": b'{"tenant": "acme", "user": "alice", "prompt": "\\ud800"}',
                "headers": {**acme, "Content-Type": "application/json"},
            },
        ),
        (
            "garbage image",
            "/v1/attribute",
            {"content": os.urandom(100_000), "headers": {**acme, "Content-Type": "image/png"}},
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--model", help="bundle (default: genprint's shipped bundle)")
    parser.add_argument("--normal-clients", type=int, default=3)
    parser.add_argument("--hostile-clients", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "hostile_load.json"))
    args = parser.parse_args()
    result = run(args.seconds, args.model, args.normal_clients, args.hostile_clients)
    print(json.dumps({k: v for k, v in result.items() if k != "hostile"}, indent=2))
    write_result(args.out, result)
    return 0 if result["normal_wrong"] == 0 and result["alive_after"] else 1


def run(seconds: float, model: str | None, normal_clients: int, hostile_clients: int) -> dict:
    import httpx

    from genprint.allocator import keep_freed_memory
    from genprint.bundle import read_config
    from genprint.registry import Registry
    from pipelines.tracking import resolve_model
    from serving.local import LocalServe
    from serving.settings import ServeSettings

    keep_freed_memory()
    bundle = resolve_model(model)
    config = read_config(bundle)
    root = Path(tempfile.mkdtemp(prefix="gp-hostile-"))
    url = f"sqlite:///{root / 'registry.db'}"
    registry = Registry(url)
    keys = {}
    for tenant, users in TENANTS.items():
        t, keys[tenant] = registry.create_tenant(tenant)
        registry.register_users(t, config["model_id"], config["nbits"], names=users)
    settings = ServeSettings.load(
        {
            "model": str(bundle),
            "registry_url": url,
            "pipeline": "photos",
            "image_size": 256,
            "max_request_bytes": MAX_BYTES,
            "max_pixels": MAX_PIXELS,
            "max_request_pixels": REQUEST_PIXELS,
            "max_inflight_pixels": INFLIGHT_PIXELS,
            "image_uri_prefixes": ["s3://uploads/{tenant}/"],
            "batch_wait_timeout_s": 0.05,
        }
    )
    stop = threading.Event()
    outcomes: dict[str, Counter] = {"normal": Counter(), "hostile": Counter()}
    wrong: list[dict] = []
    lock = threading.Lock()
    with (
        LocalServe(settings, port=0, ready_timeout=600) as local,
        httpx.Client(base_url=local.url, timeout=300) as http,
    ):
        renders, baseline = {}, {}
        for tenant, users in TENANTS.items():
            for i, user in enumerate(users):
                r = http.post(
                    "/v1/generate",
                    json={"tenant": tenant, "user": user, "prompt": f"p{i}", "seed": i},
                    headers={"X-API-Key": keys[tenant], "Accept": "image/png"},
                    params={"format": "png"},
                )
                r.raise_for_status()
                renders[(tenant, user)] = r.content
                answer = http.post(
                    "/v1/attribute", content=r.content, headers={"X-API-Key": keys[tenant], "Content-Type": "image/png"}
                )
                baseline[(tenant, user)] = answer.json()
        rss_before = replica_rss_mib()
        rss_peak = [rss_before]
        hostile = hostile_requests(keys, next(iter(renders.values())))

        def normal_client(seed: int):
            rng = random.Random(seed)
            with httpx.Client(base_url=local.url, timeout=300) as c:
                while not stop.is_set():
                    tenant, user = rng.choice(list(renders))
                    if rng.random() < 0.8:
                        r = c.post(
                            "/v1/attribute",
                            content=renders[(tenant, user)],
                            headers={"X-API-Key": keys[tenant], "Content-Type": "image/png"},
                        )
                        ok = r.status_code == 200 and r.json() == baseline[(tenant, user)]
                    else:
                        r = c.post(
                            "/v1/generate",
                            json={"tenant": tenant, "user": user, "prompt": "a boat", "seed": 1},
                            headers={"X-API-Key": keys[tenant]},
                        )
                        ok = r.status_code == 200 and r.json()["user"] == user
                    with lock:
                        outcomes["normal"][r.status_code] += 1
                        if not ok:
                            wrong.append(
                                {"tenant": tenant, "user": user, "status": r.status_code, "body": r.text[:300]}
                            )

        def hostile_client(seed: int):
            rng = random.Random(seed)
            with httpx.Client(base_url=local.url, timeout=300) as c:
                while not stop.is_set():
                    kind, path, kwargs = rng.choice(hostile)
                    try:
                        status = c.post(path, **kwargs).status_code
                    except httpx.HTTPError as exc:  # the server may cut an oversized upload short
                        status = type(exc).__name__
                    with lock:
                        outcomes["hostile"][f"{kind}: {status}"] += 1

        def sample_memory():
            while not stop.is_set():
                rss_peak.append(replica_rss_mib())
                time.sleep(0.5)

        threads = [threading.Thread(target=normal_client, args=(i,)) for i in range(normal_clients)]
        threads += [threading.Thread(target=hostile_client, args=(100 + i,)) for i in range(hostile_clients)]
        threads.append(threading.Thread(target=sample_memory))
        started = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        alive = http.get("/readyz").status_code == 200
    # What the settings let the ingress hold at once: the in-flight budget of decoded float32 RGB, plus the bodies.
    bound_mib = INFLIGHT_PIXELS * 3 * 4 / 2**20
    return {
        "benchmark": "hostile_load",
        "seconds": round(elapsed, 1),
        "model_id": config["model_id"],
        "normal_requests": sum(outcomes["normal"].values()),
        "normal_statuses": dict(outcomes["normal"]),
        "normal_wrong": len(wrong),
        "normal_wrong_examples": wrong[:5],
        "hostile_requests": sum(outcomes["hostile"].values()),
        "hostile": dict(sorted(outcomes["hostile"].items())),
        "replica_rss_mib_before": round(rss_before),
        "replica_rss_mib_peak": round(max(rss_peak)),
        "decoded_pixels_bound_mib": round(bound_mib),
        "alive_after": alive,
    }


if __name__ == "__main__":
    sys.exit(main())
