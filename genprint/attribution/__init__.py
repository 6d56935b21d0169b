"""Attribution runtime: the extractor as ONNX, run by ONNX Runtime (TensorRT -> CUDA -> CPU), plus the
image -> bits -> registry pipeline the CLI and serving share."""

from genprint.attribution.onnx_export import bundle_onnx, export_extractor
from genprint.attribution.pipeline import attribute_images
from genprint.attribution.runtime import ExtractorRuntime, provider_list

__all__ = ["export_extractor", "bundle_onnx", "ExtractorRuntime", "provider_list", "attribute_images"]
