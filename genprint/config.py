"""Training configuration: YAML files under configs/ (or any path), validated into a dataclass."""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from genprint.errors import GenprintError
from genprint.fingerprint import check_nbits

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's floats: `3e-5` and `1E3` are numbers, as in the files people write, not
    the strings YAML 1.1 makes of them."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse a config's YAML (a file or a `--set` value)."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


# The extractor's smallest input side; here so configs can check crops without importing torch.
MIN_SIZE = 64
# The fewest px a side that the extractor's margin leaves to read: a 64 px training crop keeps its inner 48 px at a
# margin of 8.
INTERIOR = 48
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class Ramp:
    """A value that moves linearly from `start` to `end` between steps `begin` and `finish`."""

    start: float = 0.0
    end: float = 0.0
    begin: int = 0
    finish: int = 0

    @property
    def ends(self) -> int:
        """The step from which the ramp holds its end value (`finish` before `begin` makes it a step at `begin`)."""
        return max(self.begin, self.finish)

    def at(self, step: int) -> float:
        if step >= self.ends:
            return self.end  # exactly: a finished ramp is at its end value, not within rounding of it
        if step <= self.begin:
            return self.start
        return self.start + (self.end - self.start) * ((step - self.begin) / (self.finish - self.begin))


@dataclass
class Schedule:
    """A value over training steps: ramps one after another, each taking over at its `begin`.

    In YAML: a number (constant), one ramp `{start, end, begin, finish}`, or a list of ramps in step order
    (a run that ramps its quality weight in, holds it, then lowers it while the learning rate cools)."""

    ramps: list[Ramp]

    def at(self, step: int) -> float:
        current = self.ramps[0]
        for ramp in self.ramps[1:]:
            if step >= ramp.begin:
                current = ramp
        return current.at(step)

    def peak(self) -> float:
        return max(max(r.start, r.end) for r in self.ramps)

    def to_config(self) -> dict | list[dict]:
        """The YAML form, which parse() reads back."""
        ramps = [dataclasses.asdict(r) for r in self.ramps]
        return ramps[0] if len(ramps) == 1 else ramps

    @classmethod
    def constant(cls, value: float) -> Schedule:
        return cls([Ramp(value, value)])

    @classmethod
    def parse(cls, value, name: str) -> Schedule:
        if isinstance(value, Schedule):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls.constant(float(value))
        shape = f"{name} must be a number, a ramp {{start, end, begin, finish}} or a list of ramps"
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(item, dict) for item in items):
            raise GenprintError(f"{shape}, got {value!r}")
        try:
            ramps = [Ramp(**item) for item in items]
        except TypeError as exc:
            raise GenprintError(f"{name}: {exc}; a ramp takes start, end, begin, finish") from None
        for before, after in zip(ramps, ramps[1:]):
            if after.begin < before.ends:
                raise GenprintError(
                    f"{name}: ramps must follow one another in step order; one beginning at step "
                    f"{after.begin} overlaps the one before it (steps {before.begin}-{before.finish})"
                )
        return cls(ramps)


@dataclass
class TrainConfig:
    name: str = "custom"
    seed: int = 0
    nbits: int = 48
    steps: int = 1000
    batch_size: int = 16
    # Training crop side in px (samples for sound); a list draws one size per step, the batch scaled to the first
    # size's pixels (samples)
    crop: int | list[int] = 64
    # px (a multiple of 8): each window is decoded this much larger and the reader reads a `crop`-px window of it at a
    # random offset (any px), so no position in the decoder's output, its borders included, is where the code is read
    read_jitter: int = 0
    # px (samples for sound) at each edge of a decoded window that the reader sees as the original decoder's output:
    # the decoder's zero padding makes its output's edges a cue reaching tens of px inwards, which no jitter removes;
    # with a band the code has to be read from the interior
    read_band: int = 0
    # px (a multiple of 8; images): each window is decoded inside this much latent context on each side and only the
    # window is kept (genprint.framing), so no edge of the decoder is within reach of what is read or priced; at least
    # the decoder's reach (145 px for TAE decoders) leaves it no edge to anchor a code to. 0: windows decoded alone
    decode_frame: int = 0
    # With decode_frame: weight of a second quality term on each step's coded windows decoded alone, the decoder's own
    # edges within reach as in a whole image (framing.unframed), read by nothing; the curriculum steers the lower of
    # the two PSNRs. Framed windows alone never price what the edges do to a whole image (docs/results.md); 0 off
    edge_quality: float = 0.0
    # Steps a window's reference decode serves (training.TargetPool); 1: always fresh
    reference_reuse: int = 1
    # Each latent crop decoded with a code and its complement (docs/research.md, Training)
    complementary_pairs: bool = False
    # With complementary pairs: weight of the MSE between each pair's mean and the original decoder's output. The mean
    # carries no bit (the code's odd part cancels in it), so this prices only the code-independent drift, which the
    # quality weight at its minimum lets grow and the quality stage must later undo; 0 off
    drift_weight: float = 0.0
    holdout: float = 0.2  # fraction of photos kept for evaluation (stable by file name)
    generator: dict = field(default_factory=lambda: {"family": "taef2", "source": None})
    modulate: list[str] | None = None  # glob patterns over decoder conv names; None: the family's default
    mapping: dict = field(default_factory=lambda: {"hidden": 256, "depth": 2, "scale_range": 0.3})
    extractor: dict = field(default_factory=lambda: {"width": 64, "depth": 6, "downsamples": 3})
    lr: Schedule = field(default_factory=lambda: Schedule.constant(1e-3))  # mapping network and extractor
    decoder_lr: Schedule = field(default_factory=lambda: Schedule.constant(0.0))  # 0 keeps the decoder frozen
    # Glob patterns over decoder module names kept frozen when it tunes
    decoder_frozen: list[str] = field(default_factory=list)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    bit_weight: Schedule = field(default_factory=lambda: Schedule.constant(1.0))
    # On MSE + ssim_weight * (1 - SSIM)
    quality_weight: Schedule = field(default_factory=lambda: Schedule.constant(0.0))
    ssim_weight: float = 0.1
    attacks: dict = field(default_factory=dict)  # {name: {p: prob, <range>: [lo, hi]}}
    attack_strength: Schedule = field(default_factory=lambda: Schedule.constant(1.0))
    # Each step's decoder weights carry Gaussian noise at U(0, this x the attack strength) of each tensor's std
    # (genprint.weights): the leaked-weights attack, trained against; 0 never
    weight_noise: Schedule = field(default_factory=lambda: Schedule.constant(0.0))
    # Half of each batch reads its code at a strength t ~ U(1 - code_shrink x the attack strength, 1): scales
    # 1 + t (s - 1), the baked weights moved a share 1 - t back towards the decoder's own; 0 never
    code_shrink: float = 0.0
    # Accuracy-keyed stages (genprint.curriculum); replaces quality_weight and attack_strength
    curriculum: dict | None = None
    # A bundle (a folder, or "default": the shipped one) whose decoder, mapping and extractor weights start the run:
    # fine-tuning instead of training from TAEF2 alone. Its architecture must be the config's; the optimiser and the
    # curriculum start fresh. A checkpoint to resume from wins over it
    init: str | None = None
    checkpoint_every: int = 200
    log_every: int = 10
    validate_every: int = 0  # held-out bit accuracy and PSNR every N steps, into the learning curve (0: never)
    threads: int | None = None
    precision: str = "auto"  # fp32, bf16 (autocast), or auto: bf16 where it measures faster (training.bf16_pays)
    channels_last: bool = True  # NHWC activations: oneDNN's and cuDNN's native layout for convolutions

    def __post_init__(self):
        check_nbits(self.nbits)
        for name in SCHEDULES:
            setattr(self, name, Schedule.parse(getattr(self, name), name))
        if self.steps < 1 or self.batch_size < 1:
            raise GenprintError("steps and batch_size must be positive")
        if self.complementary_pairs and self.batch_size % 2:
            raise GenprintError(f"complementary_pairs needs an even batch_size, got {self.batch_size}")
        if self.drift_weight < 0 or (self.drift_weight and not self.complementary_pairs):
            raise GenprintError(f"drift_weight must be >= 0 and needs complementary_pairs; got {self.drift_weight}")
        if self.precision not in PRECISIONS:
            raise GenprintError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.curriculum is not None:
            from genprint.curriculum import CurriculumConfig

            CurriculumConfig.parse(self.curriculum)
            owned = {"quality_weight": 0.0, "attack_strength": 1.0}  # their defaults: constants the curriculum replaces
            fixed = [
                name
                for name, value in owned.items()
                if getattr(self, name).to_config() != Schedule.constant(value).to_config()
            ]
            if fixed:
                raise GenprintError(f"the curriculum sets {' and '.join(fixed)}; drop them from the config")
        if min(min(r.start, r.end) for r in self.weight_noise.ramps) < 0:
            raise GenprintError(f"weight_noise must be at least 0, got {self.weight_noise.to_config()}")
        if not 0 <= self.code_shrink <= 1:
            raise GenprintError(f"code_shrink must be in [0, 1], got {self.code_shrink}")
        if not 0 <= self.holdout < 1:
            raise GenprintError(f"holdout must be in [0, 1), got {self.holdout}")
        margin = self.extractor.get("margin", 0)
        least = max(MIN_SIZE, INTERIOR + 2 * margin)
        crops = self.crop if isinstance(self.crop, list) else [self.crop]
        if self.read_jitter < 0 or self.read_jitter % 8:
            raise GenprintError(f"read_jitter must be a multiple of 8 px, at least 0; got {self.read_jitter}")
        if not crops or any(not isinstance(c, int) or c % 8 or c < least for c in crops):
            raise GenprintError(
                f"crop must be a multiple of 8 and at least {least} px (the extractor's {MIN_SIZE} px minimum, "
                f"and {INTERIOR} px inside its margin of {margin} px), or a list of such sizes; got {self.crop}"
            )
        if self.decode_frame < 0 or self.decode_frame % 8:
            raise GenprintError(f"decode_frame must be a multiple of 8 px, at least 0; got {self.decode_frame}")
        if self.edge_quality < 0 or (self.edge_quality and not self.decode_frame):
            raise GenprintError(f"edge_quality needs a decode_frame and must be at least 0; got {self.edge_quality}")
        if not 0 <= 2 * self.read_band < min(crops) + self.read_jitter:
            raise GenprintError(
                f"read_band must be at least 0 and leave some of each decoded window (crop {self.crop} + read_jitter "
                f"{self.read_jitter}) outside it; got {self.read_band}"
            )

    @property
    def crops(self) -> list[int]:
        """The training crop sizes (one, or several drawn per step)."""
        return list(self.crop) if isinstance(self.crop, list) else [self.crop]

    def batch_for(self, crop: int, dims: int = 2) -> int:
        """Items per step at `crop` (px a side, or samples for sound: `dims` 1): batch_size at the first size, as many
        pixels or samples at the others (at least one complementary pair)."""
        n = int(self.batch_size * (self.crops[0] / crop) ** dims)
        return max(2, n - n % 2) if self.complementary_pairs else max(1, n)

    @property
    def train_decoder(self) -> bool:
        return self.decoder_lr.peak() > 0

    def cut_short(self, steps: int) -> list[str]:
        """Schedules that have not reached their final value by `steps` (a run stopped before its later stages)."""
        return [
            f"{name} ({schedule.at(steps):g} of {schedule.ramps[-1].end:g})"
            for name in SCHEDULES
            if (schedule := getattr(self, name)).at(steps) != schedule.ramps[-1].end
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain values, schedules in their YAML form: TrainConfig(**to_dict()) rebuilds the config."""
        return {**dataclasses.asdict(self), **{name: getattr(self, name).to_config() for name in SCHEDULES}}


SCHEDULES = tuple(
    f.name for f in dataclasses.fields(TrainConfig) if f.type == "Schedule"
)  # from the annotations: none missed


def _apply_overrides(raw: dict, overrides: dict) -> None:
    """Set each override in `raw`: a dotted key (`extractor.margin`) changes that one entry of the file's mapping and
    keeps its siblings; a plain key replaces the whole setting."""
    for key, value in copy.deepcopy(overrides).items():  # later dotted keys may reach into earlier values
        *parents, leaf = key.split(".")
        node = raw
        for name in parents:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise GenprintError(f"cannot set {key}: {name} is {node!r}, not a mapping")
        node[leaf] = value


def load_config(name_or_path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """A config by name (configs/<name>.yaml shipped with genprint) or by path, with `overrides` applied (dotted keys
    reach into mappings); unknown keys are errors."""
    path = Path(name_or_path)
    if not path.exists():
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise GenprintError(f"no config file {name_or_path!r} (named configs: {', '.join(known)})")
    try:
        raw = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise GenprintError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise GenprintError(f"{path} must hold a mapping of settings")
    _apply_overrides(raw, overrides or {})
    allowed = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(raw) - allowed
    if unknown:
        raise GenprintError(f"{path}: unknown settings {sorted(unknown)}; allowed: {sorted(allowed)}")
    raw.setdefault("name", path.stem)
    try:
        return TrainConfig(**raw)
    except TypeError as exc:
        raise GenprintError(f"{path}: {exc}") from None
