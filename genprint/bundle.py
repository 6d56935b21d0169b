"""A trained model on disk: a directory of `config.json` + safetensors files, nothing pickled.

    config.json                 format, versions, generator spec, modulated convs, mapping/extractor configs, training config, metrics
    decoder.safetensors         the fine-tuned decoder (unmodulated weights)
    reference_decoder.safetensors  the original decoder (quality target, "no fingerprint" output)
    encoder.safetensors         the encoder (absent when the source had none)
    mapping.safetensors         mapping network
    extractor.safetensors       fingerprint extractor (private to the distributor)
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import genprint
from genprint.errors import GenprintError
from genprint.extractor import Extractor
from genprint.generators import build_adapter
from genprint.model import GenprintModel
from genprint.modulation import MappingNetwork

FILES = ("decoder", "reference_decoder", "encoder", "mapping", "extractor")


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_bundle(model: GenprintModel, out_dir: str | Path, train_config: dict | None = None, metrics: dict | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    modules = {"decoder": model.decoder, "reference_decoder": model.reference, "mapping": model.mapping, "extractor": model.extractor}
    if model.encoder is not None:
        modules["encoder"] = model.encoder
    digest = hashlib.sha256()
    for name, module in modules.items():
        path = out / f"{name}.safetensors"
        save_file(_state(module), path)
        digest.update(path.read_bytes())
    config = {
        "format": genprint.BUNDLE_FORMAT,
        "genprint_version": genprint.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model_id": digest.hexdigest()[:16],
        "nbits": model.nbits,
        "generator": model.adapter.spec,
        "modulated": model.modulated,
        "mapping": model.mapping.config,
        "extractor": model.extractor.config,
        "train": train_config or {},
        "metrics": metrics or {},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str))
    return out


def read_config(path: str | Path) -> dict:
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise GenprintError(f"{path} is not a genprint bundle (no config.json)")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise GenprintError(f"{cfg_path} is not valid JSON: {exc}") from None
    if config.get("format") != genprint.BUNDLE_FORMAT:
        raise GenprintError(f"{path} is bundle format {config.get('format')!r}; this genprint ({genprint.__version__}) reads format "
                            f"{genprint.BUNDLE_FORMAT}: re-export it with a matching genprint version")
    return config


def _load_into(module: torch.nn.Module, path: Path) -> None:
    try:
        module.load_state_dict(load_file(path))
    except (SafetensorError, OSError, RuntimeError) as exc:
        detail = next((l.strip() for l in str(exc).splitlines()[1:] if l.strip()), str(exc).splitlines()[0] if str(exc) else "")
        raise GenprintError(f"{path} does not match the bundle's config ({detail}); was it written by another genprint version?") from None


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> GenprintModel:
    """The one way to load a bundle: returns an eval-mode GenprintModel."""
    path = Path(path)
    config = read_config(path)
    adapter = build_adapter(config["generator"])
    _load_into(adapter.decoder, path / "decoder.safetensors")
    if (path / "encoder.safetensors").exists() and adapter.encoder is not None:
        _load_into(adapter.encoder, path / "encoder.safetensors")
    else:
        adapter.encoder = None
    reference = build_adapter(config["generator"]).decoder
    _load_into(reference, path / "reference_decoder.safetensors")
    mapping = MappingNetwork(**config["mapping"])
    _load_into(mapping, path / "mapping.safetensors")
    extractor = Extractor(**config["extractor"])
    _load_into(extractor, path / "extractor.safetensors")
    model = GenprintModel(adapter, config["modulated"], mapping, extractor, reference=reference)
    model.bundle_config = config
    return model.to(device).eval()
