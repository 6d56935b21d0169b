"""Extractor images/s at 256x256, batch 1/16/64: PyTorch eager vs ONNX Runtime CPU in the same run.

    .venv/bin/python benchmarks/extractor_throughput.py [--model BUNDLE_DIR] [--seconds 3] [--threads N]

Without --model, a fresh extractor of the default architecture (48 bits, width 64, depth 6) is timed:
speed does not depend on the weights. Target: ONNX Runtime >= 2x eager at batch 64.
Writes benchmarks/results/extractor_throughput.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _results import write_result

from genprint.extractor import Extractor
from genprint.readers import ExtractorRuntime, export_extractor


def rate(fn, batch: int, seconds: float) -> float:
    fn()  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < 2:
        fn()
        n += 1
    return n * batch / (time.perf_counter() - start)


def main() -> None:
    from genprint.allocator import keep_freed_memory

    keep_freed_memory()  # as every genprint process does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="bundle directory (default: a fresh default extractor)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=None, help="threads for both (default: torch's default count)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "extractor_throughput.json"))
    args = parser.parse_args()
    if args.model:
        from genprint.bundle import load_bundle

        extractor = load_bundle(args.model).extractor
    else:
        extractor = Extractor(48)
    extractor.eval()
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runtime = ExtractorRuntime(
            export_extractor(extractor, Path(tmp) / "extractor.onnx"),
            providers=["CPUExecutionProvider"],
            threads=threads,
        )
        for batch in args.batches:
            images = torch.rand(batch, 3, args.size, args.size)
            array = images.numpy()
            with torch.inference_mode():
                eager = rate(lambda: extractor(images), batch, args.seconds)
            ort_rate = rate(lambda: runtime.logits(array), batch, args.seconds)
            rows.append(
                {"batch": batch, "eager_images_per_s": eager, "ort_images_per_s": ort_rate, "speedup": ort_rate / eager}
            )
            print(
                f"batch {batch:>3}: eager {eager:8.1f} img/s   ORT CPU {ort_rate:8.1f} img/s   x{ort_rate / eager:.2f}",
                flush=True,
            )
    result = {
        "benchmark": "extractor_throughput",
        "size": args.size,
        "threads": threads,
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
        "extractor": extractor.config,
        "results": rows,
        "target": "ORT >= 2x eager at batch 64",
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
