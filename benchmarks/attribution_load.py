#!/usr/bin/env python3
"""Attribution service under load: a bounded closed-loop load generator on loopback against the local Serve app.

    python benchmarks/attribution_load.py [--model BUNDLE] [--users 1000] [--requests 200] [--concurrency 8]
        [--side 256]

Starts the whole application (serving.local.LocalServe) with a fresh SQLite registry of --users fingerprints, then for
batch size 1 (POST /v1/attribute, raw PNG) and 16 (POST /v1/attribute/batch, base64) sends --requests requests from
--concurrency clients, each waiting for its answer before the next (so at most that many are in flight).
Reports requests/s, images/s and p50/p99 latency; writes benchmarks/results/attribution_load.json.
"""

from __future__ import annotations

import argparse
import base64
import io
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _results import write_result

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def untrained_bundle(out: Path) -> Path:
    from genprint.bundle import save_bundle
    from genprint.generators import load_adapter_source
    from genprint.model import GenprintModel
    from genprint.settings import taef2_dir

    return save_bundle(GenprintModel.create(load_adapter_source("taef2", taef2_dir()), nbits=48), out)


def run_load(url: str, key: str, body_for, n_requests: int, concurrency: int) -> dict:
    import httpx

    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    counter = iter(range(n_requests))

    def client_loop():
        with httpx.Client(base_url=url, timeout=300) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                path, kwargs = body_for(i)
                start = time.perf_counter()
                r = client.post(path, headers={"X-API-Key": key, **kwargs.pop("headers", {})}, **kwargs)
                elapsed = time.perf_counter() - start
                with lock:
                    (latencies if r.status_code == 200 else failures).append(
                        elapsed if r.status_code == 200 else r.status_code
                    )

    threads = [threading.Thread(target=client_loop) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {
        "requests": n_requests,
        "ok": len(latencies),
        "failed": len(failures),
        "seconds": wall,
        "requests_per_second": len(latencies) / wall,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="bundle directory (default: an untrained 48-bit TAEF2 bundle)")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200, help="requests per batch size")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--side", type=int, default=256, help="image side in pixels")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "attribution_load.json"))
    args = parser.parse_args()

    from PIL import Image

    from genprint.bundle import read_config
    from genprint.registry import Registry
    from serving.local import LocalServe
    from serving.settings import ServeSettings

    work = Path(tempfile.mkdtemp(prefix="gp-load-"))
    bundle = Path(args.model) if args.model else untrained_bundle(work / "bundle")
    config = read_config(bundle)
    registry_url = f"sqlite:///{work / 'registry.db'}"
    registry = Registry(registry_url)
    tenant, key = registry.create_tenant("load")
    registry.register_users(tenant, config["model_id"], config["nbits"], count=args.users)

    rng = np.random.default_rng(0)
    pngs = []
    for _ in range(32):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (args.side, args.side, 3), np.uint8)).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    b64 = [base64.b64encode(p).decode() for p in pngs]

    def single(i):
        return "/v1/attribute", {"content": pngs[i % len(pngs)], "headers": {"Content-Type": "image/png"}}

    def batch16(i):
        return "/v1/attribute/batch", {"json": {"images": [{"base64": b64[(i + j) % len(b64)]} for j in range(16)]}}

    settings = ServeSettings.load(
        {
            "model": str(bundle),
            "registry_url": registry_url,
            "attribution_batch_size": 32,
            "max_request_bytes": 64 << 20,
        }
    )
    results = {}
    with LocalServe(settings, port=0) as stack:
        for name, body_for, images in (("batch_1", single, 1), ("batch_16", batch16, 16)):
            run_load(stack.url, key, body_for, min(args.requests, 2 * args.concurrency), args.concurrency)  # warm-up
            r = run_load(stack.url, key, body_for, args.requests, args.concurrency)
            r["images_per_second"] = r["requests_per_second"] * images
            results[name] = r
            print(
                f"{name}: {r['requests_per_second']:.1f} req/s, {r['images_per_second']:.1f} img/s, "
                f"p50 {r['p50_ms']:.0f} ms, "
                f"p99 {r['p99_ms']:.0f} ms, {r['failed']} failed"
            )
    out = {
        "machine": platform.processor() or platform.machine(),
        "users": args.users,
        "side": args.side,
        "concurrency": args.concurrency,
        "results": results,
    }
    write_result(args.out, out)


if __name__ == "__main__":
    main()
