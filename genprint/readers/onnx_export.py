"""Export the extractor to ONNX with dynamic batch, height and width."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from genprint.errors import GenprintError
from genprint.extractor import MIN_SIZE, Extractor
from genprint.settings import cache_dir

INPUT, OUTPUT = "images", "logits"
OPSET = 17


def export_extractor(extractor: Extractor, path: str | Path, opset: int = OPSET) -> Path:
    """Write `extractor` (eval mode, batch norm folded by the exporter) as ONNX: images (B, 3, H, W) float32 in
    [0, 1] -> logits (B, nbits). A residual extractor's re-rendering (encoder + original decoder) is traced into the
    graph too. Written to a temporary name first so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = extractor.eval().to("cpu")
    example = torch.rand(1, 3, MIN_SIZE * 2, MIN_SIZE * 2)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about the input checks, which run before ORT instead
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch", 2: "height", 3: "width"}, OUTPUT: {0: "batch"}},
        )
    os.replace(tmp, path)
    return path


def bundle_onnx(bundle_dir: str | Path, cache: str | Path | None = None) -> tuple[Path, dict]:
    """The ONNX extractor of a bundle, exported once into the cache (keyed by the bundle's model_id).
    Returns (onnx path, bundle config)."""
    from genprint.bundle import check_file, load_bundle, read_config

    config = read_config(bundle_dir)
    path = Path(cache or cache_dir()) / "onnx" / config["model_id"] / "extractor.onnx"
    if path.exists():  # the cached export stands for this bundle while its extractor is what its config records
        check_file(Path(bundle_dir) / "extractor.safetensors", config["files"]["extractor"])
    else:  # loading checks every file
        try:
            export_extractor(load_bundle(bundle_dir).extractor, path)
        except OSError as exc:
            raise GenprintError(f"cannot write the ONNX extractor to {path}: {exc}") from None
    return path, config
