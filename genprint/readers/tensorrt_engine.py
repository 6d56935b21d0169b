"""A native TensorRT engine from the ONNX extractor, for deployments that run TensorRT directly.
Only usable where the `tensorrt` package imports (GPU machines); ONNX Runtime's TensorRT EP needs none of this."""

from __future__ import annotations

from pathlib import Path

from genprint.errors import GenprintError
from genprint.extractor import MIN_SIZE


def tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    fp16: bool = True,
    max_batch: int = 64,
    opt_side: int = 512,
    max_side: int = 2048,
    workspace_gib: float = 4.0,
) -> Path:
    """Parse the ONNX file, build a serialized engine with one optimisation profile covering
    batch 1..max_batch and sides 64..max_side, and write it to engine_path."""
    try:
        import tensorrt as trt
    except ImportError:
        raise GenprintError("TensorRT is not installed (pip install 'genprint[gpu]' on a CUDA machine)") from None
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise GenprintError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(
        "images",
        (1, 3, MIN_SIZE, MIN_SIZE),
        (max(1, max_batch // 4), 3, opt_side, opt_side),
        (max_batch, 3, max_side, max_side),
    )
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise GenprintError("TensorRT failed to build the engine (see its log above)")
    out = Path(engine_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bytes(engine))
    return out
