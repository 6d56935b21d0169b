"""Readers: image batches -> per-bit logits. Every verb, service and job reads fingerprints through one of these.

    reader = make_reader(bundle, "cnn")          # the extractor on ONNX Runtime (TensorRT -> CUDA -> CPU): high rate
    reader = make_reader(bundle, "inversion")    # fits each image through the decoder: seconds per image, forensic
    reader.probabilities(images)                 # (B, nbits) in [0, 1]; .logits, .bits alike

`bundle` is a bundle directory or a loaded GenprintModel (training and evaluation, where no bundle is written yet:
the CNN then runs the extractor eagerly in torch).
"""

from __future__ import annotations

from pathlib import Path

from genprint.errors import GenprintError
from genprint.readers.base import Reader
from genprint.readers.onnx_export import bundle_onnx, export_extractor
from genprint.readers.onnx_runtime import ExtractorRuntime, provider_list

READERS = ("cnn", "inversion")

__all__ = ["READERS", "ExtractorRuntime", "Reader", "bundle_onnx", "export_extractor", "make_reader", "provider_list"]


def make_reader(
    bundle,
    kind: str = "cnn",
    *,
    device: str | None = None,
    threads: int | None = None,
    inversion_steps: int | None = None,
    max_rotation: float | None = None,
) -> Reader:
    """The reader `kind` for a bundle directory or a loaded model.

    threads: ONNX Runtime's intra-op threads (default $GENPRINT_ORT_THREADS, else all cores).
    inversion_steps, max_rotation: the inversion reader's fitting steps and angle search (defaults:
    genprint.inversion)."""
    if kind not in READERS:
        raise GenprintError(f"unknown reader {kind!r}; known: {', '.join(READERS)}")
    from genprint.bundle import load_bundle, read_config
    from genprint.model import GenprintModel, default_device

    if kind == "cnn":
        from genprint.readers.torch_extractor import TorchExtractorReader

        if isinstance(bundle, GenprintModel):
            return TorchExtractorReader(bundle)
        if read_config(bundle)["extractor"].get("modality") == "audio":  # the waveform reader runs in torch
            return TorchExtractorReader(load_bundle(Path(bundle), device or default_device()))
        from genprint.settings import onnx_threads

        onnx_path, config = bundle_onnx(bundle)
        return ExtractorRuntime(onnx_path, threads=threads or onnx_threads(), model_id=config["model_id"])
    from genprint.inversion import InversionReader

    model = bundle if isinstance(bundle, GenprintModel) else load_bundle(Path(bundle), device or default_device())
    if model.adapter.modality == "audio":
        raise GenprintError(f"the {kind} reader reads images; audio bundles are read by the cnn reader")
    options = {k: v for k, v in {"steps": inversion_steps, "max_rotation": max_rotation}.items() if v is not None}
    return InversionReader(model, **options)
