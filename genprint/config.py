"""Training configuration: YAML files under configs/ (or any path), validated into a dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from genprint.errors import GenprintError
from genprint.fingerprint import check_nbits

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class Ramp:
    """A value that moves linearly from `start` to `end` between steps `begin` and `finish`."""

    start: float = 0.0
    end: float = 0.0
    begin: int = 0
    finish: int = 0

    def at(self, step: int) -> float:
        if self.finish <= self.begin:
            return self.end if step >= self.begin else self.start
        t = min(1.0, max(0.0, (step - self.begin) / (self.finish - self.begin)))
        return self.start + (self.end - self.start) * t

    @classmethod
    def parse(cls, value, name: str) -> "Ramp":
        if isinstance(value, (int, float)):
            return cls(float(value), float(value))
        if isinstance(value, dict):
            try:
                return cls(**value)
            except TypeError as exc:
                raise GenprintError(f"{name}: {exc}; a schedule takes start, end, begin, finish") from None
        raise GenprintError(f"{name} must be a number or a schedule {{start, end, begin, finish}}, got {value!r}")


@dataclass
class TrainConfig:
    name: str = "custom"
    seed: int = 0
    nbits: int = 48
    steps: int = 1000
    batch_size: int = 16
    crop: int = 64
    complementary_pairs: bool = False          # each latent crop decoded with a code and its complement (docs/research.md, Training)
    holdout: float = 0.2                       # fraction of photos kept for evaluation (stable by file name)
    generator: dict = field(default_factory=lambda: {"family": "taef2", "source": None})
    modulate: list[str] | None = None          # glob patterns over decoder conv names; None: the family's default
    mapping: dict = field(default_factory=lambda: {"hidden": 256, "depth": 2, "scale_range": 0.3})
    extractor: dict = field(default_factory=lambda: {"width": 64, "depth": 6, "downsamples": 3})
    lr: Ramp = field(default_factory=lambda: Ramp(1e-3, 1e-3))   # mapping network and extractor
    decoder_lr: Ramp = field(default_factory=Ramp)   # 0 keeps the decoder frozen
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    bit_weight: Ramp = field(default_factory=lambda: Ramp(1.0, 1.0))
    quality_weight: Ramp = field(default_factory=Ramp)   # on MSE + ssim_weight * (1 - SSIM)
    ssim_weight: float = 0.1
    attacks: dict = field(default_factory=dict)      # {name: {p: prob, <range>: [lo, hi]}}
    attack_strength: Ramp = field(default_factory=lambda: Ramp(1.0, 1.0))
    checkpoint_every: int = 200
    log_every: int = 10
    threads: int | None = None

    def __post_init__(self):
        check_nbits(self.nbits)
        for ramp in ("lr", "decoder_lr", "bit_weight", "quality_weight", "attack_strength"):
            setattr(self, ramp, Ramp.parse(getattr(self, ramp), ramp) if not isinstance(getattr(self, ramp), Ramp) else getattr(self, ramp))
        if self.steps < 1 or self.batch_size < 1:
            raise GenprintError("steps and batch_size must be positive")
        if self.complementary_pairs and self.batch_size % 2:
            raise GenprintError(f"complementary_pairs needs an even batch_size, got {self.batch_size}")
        if not 0 <= self.holdout < 1:
            raise GenprintError(f"holdout must be in [0, 1), got {self.holdout}")
        if self.crop < 64 or self.crop % 8:
            raise GenprintError(f"crop must be a multiple of 8 and at least 64 px (the extractor's minimum), got {self.crop}")

    @property
    def train_decoder(self) -> bool:
        return max(self.decoder_lr.start, self.decoder_lr.end) > 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(name_or_path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """A config by name (configs/<name>.yaml shipped with genprint) or by path; unknown keys are errors."""
    path = Path(name_or_path)
    if not path.exists():
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise GenprintError(f"no config file {name_or_path!r} (named configs: {', '.join(known)})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise GenprintError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise GenprintError(f"{path} must hold a mapping of settings")
    raw.update(overrides or {})
    allowed = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(raw) - allowed
    if unknown:
        raise GenprintError(f"{path}: unknown settings {sorted(unknown)}; allowed: {sorted(allowed)}")
    raw.setdefault("name", path.stem)
    try:
        return TrainConfig(**raw)
    except TypeError as exc:
        raise GenprintError(f"{path}: {exc}") from None
