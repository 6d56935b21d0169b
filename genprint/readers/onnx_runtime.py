"""Run the ONNX extractor with ONNX Runtime: TensorRT EP (fp16, engine cache, shape profiles) -> CUDA EP -> CPU EP,
whichever are installed (onnxruntime-gpu brings the first two)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from genprint.errors import GenprintError
from genprint.extractor import MIN_SIZE, check_images
from genprint.readers.base import Reader
from genprint.settings import cache_dir

log = logging.getLogger(__name__)

PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def provider_list(
    available: list[str],
    trt_cache_dir: str | Path | None = None,
    max_batch: int = 64,
    max_side: int = 2048,
    opt_side: int = 512,
) -> list:
    """The providers to ask ORT for, best first, with their options; only installed ones are listed."""
    providers: list = []
    for name in PREFERENCE:
        if name not in available:
            continue
        if name == "TensorrtExecutionProvider":
            cache = Path(trt_cache_dir or cache_dir() / "trt")
            cache.mkdir(parents=True, exist_ok=True)
            shape = lambda b, s: f"images:{b}x3x{s}x{s}"  # noqa: E731
            providers.append(
                (
                    name,
                    {
                        "trt_fp16_enable": True,
                        "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": str(cache),
                        "trt_timing_cache_enable": True,
                        "trt_timing_cache_path": str(cache),
                        "trt_profile_min_shapes": shape(1, MIN_SIZE),
                        "trt_profile_opt_shapes": shape(max(1, max_batch // 4), opt_side),
                        "trt_profile_max_shapes": shape(max_batch, max_side),
                    },
                )
            )
        else:
            providers.append(name)
    return providers


class ExtractorRuntime(Reader):
    """The CNN reader at high rate: an ONNX Runtime session for the exported extractor.

    providers: explicit ORT provider names, else the best installed (see provider_list).
    threads: intra-op threads (default: ORT's choice, all cores).
    """

    def __init__(
        self,
        onnx_path: str | Path,
        providers: list | None = None,
        threads: int | None = None,
        trt_cache_dir: str | Path | None = None,
        model_id: str = "unknown",
    ):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        if providers is None:
            providers = provider_list(ort.get_available_providers(), trt_cache_dir)
        try:
            self.session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types
            raise GenprintError(f"cannot load ONNX extractor {onnx_path}: {str(exc).splitlines()[0]}") from None
        self.providers = self.runtime = self.session.get_providers()
        self.nbits = int(self.session.get_outputs()[0].shape[1])
        self.model_id = model_id
        log.info("extractor runtime: %s", ", ".join(self.providers))

    def logits(self, images) -> np.ndarray:
        arr = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.ndim == 3:
            arr = arr[None]
        check_images(arr.shape)
        return self.session.run(None, {"images": arr})[0]
