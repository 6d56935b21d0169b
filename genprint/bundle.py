"""A trained model on disk: a directory of `config.json` + safetensors files, nothing pickled, every file verified.

config.json                 format, versions, generator spec, modulated convs, mapping/extractor configs,
                            training config, metrics, and each weight file's sha256 (`files`)
decoder.safetensors         the fine-tuned decoder (unmodulated weights)
reference_decoder.safetensors  the original decoder (quality target, "no fingerprint" output)
encoder.safetensors         the encoder (absent when the source had none)
mapping.safetensors         mapping network
extractor.safetensors       fingerprint extractor (private to the distributor)

The model_id is derived from the files' hashes, and loading checks every file against its hash, so a bundle is what
its id says or it does not load. A bundle is written into a temporary folder beside its target and renamed into
place: an interrupted save leaves the old bundle or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import genprint
from genprint import settings
from genprint.errors import GenprintError
from genprint.extractor import make_extractor
from genprint.generators import build_adapter
from genprint.model import GenprintModel
from genprint.modulation import MappingNetwork
from genprint.storage import sha256_file

FILES = ("decoder", "reference_decoder", "encoder", "mapping", "extractor")
REQUIRED = ("decoder", "reference_decoder", "mapping", "extractor")
# config.json's fields and their types: a bundle whose config does not match is refused with one message.
SCHEMA = {
    "format": int,
    "model_id": str,
    "nbits": int,
    "generator": dict,
    "modulated": list,
    "mapping": dict,
    "extractor": dict,
    "files": dict,
}
MODEL_ID = re.compile(r"[0-9a-f]{16}")
log = logging.getLogger(__name__)
_announced = False


def _state(module: torch.nn.Module, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """The module's tensors on the CPU; floating-point ones in `dtype` when given (a smaller bundle to ship)."""
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    return {k: v.to(dtype) if dtype is not None and v.is_floating_point() else v for k, v in state.items()}


def model_id(files: dict[str, str]) -> str:
    """The bundle's id: a digest of its weight files' hashes."""
    return hashlib.sha256("".join(f"{name}:{files[name]};" for name in sorted(files)).encode()).hexdigest()[:16]


def save_bundle(
    model: GenprintModel,
    out_dir: str | Path,
    train_config: dict | None = None,
    metrics: dict | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write `model` to `out_dir` (replacing a bundle there); `dtype` (e.g. torch.float16) stores the weights smaller,
    and loading casts them back to float32."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    modules = {
        "decoder": model.decoder,
        "reference_decoder": model.reference,
        "mapping": model.mapping,
        "extractor": model.extractor,
    }
    if model.encoder is not None:
        modules["encoder"] = model.encoder
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        files = {}
        for name, module in modules.items():
            path = staging / f"{name}.safetensors"
            save_file(_state(module, dtype), path)
            files[name] = sha256_file(path)
        config = {
            "format": genprint.BUNDLE_FORMAT,
            "genprint_version": genprint.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model_id": model_id(files),
            "nbits": model.nbits,
            "generator": model.adapter.spec,
            "modulated": model.modulated,
            "mapping": model.mapping.config,
            "extractor": model.extractor.config,
            "files": files,
            "train": train_config or {},
            "metrics": metrics or {},
        }
        (staging / "config.json").write_text(json.dumps(config, indent=2, default=str))
        _replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


CHECKPOINTS = "checkpoints"  # `genprint train`'s default checkpoint folder, inside the bundle folder it writes


def _replace(staging: Path, out: Path) -> None:
    """Move the finished `staging` folder to `out`; an existing `out` is renamed away first and removed after. A
    training run's checkpoint folder in `out` moves into the new bundle, so its run can still resume."""
    old = None
    if out.exists():
        if not (out / "config.json").is_file() and any(p.name != CHECKPOINTS for p in out.iterdir()):
            raise GenprintError(f"{out} exists and is not a bundle: refusing to replace it")
        old = out.with_name(f".{out.name}.old{os.getpid()}")
        os.replace(out, old)
        if (old / CHECKPOINTS).is_dir():
            os.replace(old / CHECKPOINTS, staging / CHECKPOINTS)
    try:
        os.replace(staging, out)
    except BaseException:
        if old is not None:
            if (staging / CHECKPOINTS).is_dir():
                os.replace(staging / CHECKPOINTS, old / CHECKPOINTS)
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_config(path: str | Path) -> dict:
    """config.json of the bundle at `path`, checked against the schema (not the weights: load_bundle does that)."""
    path = Path(path)
    cfg_path = path / "config.json"
    if not path.exists() and (left := sorted(path.parent.glob(f".{path.name}.old*"))):
        os.replace(left[-1], path)  # a save stopped between its two renames: the old bundle comes back
    if not cfg_path.is_file():
        raise GenprintError(f"{path} is not a genprint bundle (no config.json)")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GenprintError(f"{cfg_path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise GenprintError(f"{cfg_path} must hold a JSON object")
    if config.get("format") != genprint.BUNDLE_FORMAT:
        raise GenprintError(
            f"{path} is bundle format {config.get('format')!r}; this genprint ({genprint.__version__}) reads format "
            f"{genprint.BUNDLE_FORMAT}: re-export it with a matching genprint version"
        )
    wrong = [f"{k} (want {t.__name__})" for k, t in SCHEMA.items() if not isinstance(config.get(k), t)]
    if wrong:
        raise GenprintError(f"{cfg_path} has missing or mistyped fields: {', '.join(wrong)}")
    if not MODEL_ID.fullmatch(config["model_id"]) or config["model_id"] != model_id(config["files"]):
        raise GenprintError(f"{cfg_path}: model_id {config['model_id']!r} is not the digest of its files' hashes")
    if missing := [name for name in REQUIRED if name not in config["files"]]:
        raise GenprintError(f"{cfg_path} lists no {', '.join(missing)} weights")
    return config


def check_file(path: Path, expected: str) -> None:
    """A bundle file is present and is what its config.json records (sha256)."""
    if not path.is_file():
        raise GenprintError(f"{path} is missing from the bundle")
    if sha256_file(path) != expected:
        raise GenprintError(f"{path} does not match the sha256 its bundle's config.json records: corrupted or replaced")


def load_error_detail(exc: Exception) -> str:
    """The line of a failed state-dict load that says what differs (torch puts it after a header line)."""
    lines = str(exc).splitlines()
    return next((line.strip() for line in lines[1:] if line.strip()), lines[0] if lines else "")


def _load_into(module: torch.nn.Module, path: Path, expected: str) -> None:
    check_file(path, expected)
    try:
        module.load_state_dict(load_file(path))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise GenprintError(f"{path} does not match the bundle's config ({load_error_detail(exc)})") from None


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> GenprintModel:
    """The one way to load a bundle: every file checked against its hash; returns an eval-mode GenprintModel."""
    path = Path(path)
    config = read_config(path)
    files = config["files"]
    try:
        adapter = build_adapter(config["generator"])
        reference = build_adapter(config["generator"]).decoder
        mapping = MappingNetwork(**config["mapping"])
        extractor_config = dict(config["extractor"])
        if extractor_config.get("modality") == "audio" and extractor_config.get("stages") == []:
            extractor_config.setdefault("pool", "every")  # saved before `pool` existed: read as trained
        extractor = make_extractor(extractor_config["nbits"], extractor_config)
    except (TypeError, ValueError, KeyError) as exc:
        raise GenprintError(f"{path / 'config.json'} describes no model this genprint builds: {exc}") from None
    _load_into(adapter.decoder, path / "decoder.safetensors", files["decoder"])
    if "encoder" in files and adapter.encoder is not None:
        _load_into(adapter.encoder, path / "encoder.safetensors", files["encoder"])
    else:
        adapter.encoder = None
    _load_into(reference, path / "reference_decoder.safetensors", files["reference_decoder"])
    _load_into(mapping, path / "mapping.safetensors", files["mapping"])
    _load_into(extractor, path / "extractor.safetensors", files["extractor"])
    try:
        model = GenprintModel(adapter, config["modulated"], mapping, extractor, reference=reference)
    except (TypeError, KeyError) as exc:
        raise GenprintError(f"{path / 'config.json'} names modulated convs this decoder lacks: {exc}") from None
    model.bundle_config = config
    return model.to(device).eval()


def default_bundle() -> Path:
    """The trained bundle shipped inside the package (genprint/models/default): what every verb uses without --model.
    The first use in a process says so on stderr."""
    global _announced
    path = settings.default_bundle_dir()
    if not (path / "config.json").is_file():
        raise GenprintError(f"no --model given, and this installation ships no default bundle at {path}: pass --model")
    config = read_config(path)
    if not _announced:
        log.info("no --model given: using genprint's default bundle %s (model %s)", path, config["model_id"])
        _announced = True
    return path
