"""A training curriculum keyed on accuracy: quality and attacks come in when the code can bear them, not at fixed steps.

Stages run in order, each advancing by 1/steps per training step only while the training stream's smoothed bit
accuracy is at or above the stage's gate (LaWa switches attacks on at an accuracy threshold; TrustMark and
StegaStamp hold the image loss until the message is learned):

  quality   the PSNR target rises from psnr[0] to psnr[1] dB, and only while the stream's smoothed PSNR is within
            `psnr_lag` dB of it: the target never runs ahead of what the code has reached; the learning rates fall
            with it, log-linearly to `quality_lr_factor`: a fainter code needs finer steps (docs/training.md)
  attacks   the training attacks' strength rises from 0 to 1
  cooldown  the learning rates fall by a further `cooldown_factor`

The quality weight is a Lagrange multiplier for "PSNR >= target": its logarithm rises while the stream's PSNR is
under the target and falls while it is over. It rises only while the stream reads at or above the current stage's
gate: when tightening quality has pushed the code under its gate, the weight holds until accuracy recovers instead of
winding up (docs/training.md has the run where it did and squeezed the code). Under psnr[0], the least quality the
recipe accepts, it rises whatever the stream reads. A quality the code cannot bear at the gate is therefore never
forced: the run stays near the best PSNR it reads at the gate.
All of it is state that checkpoints carry, so a resumed run continues the curriculum where it stood.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from genprint.errors import GenprintError

STAGES = ("quality", "attacks", "cooldown")


@dataclass
class StageConfig:
    gate: float = 0.9  # smoothed stream bit accuracy needed to advance
    steps: int = 1000  # steps of advancing from the stage's start to its end


@dataclass
class CurriculumConfig:
    smoothing: int = 100  # steps in the running mean of the stream's bit accuracy
    psnr: tuple[float, float] = (24.0, 33.0)  # the quality stage's PSNR target, start and end (dB)
    weight: tuple[float, float, float] = (1.0, 0.01, 1000.0)  # quality weight: start, min, max
    weight_rate: float = 0.02  # change of log(weight) per step and dB off target
    psnr_lag: float = 1.0  # dB the smoothed stream PSNR may trail the target while the target still rises
    quality_lr_factor: float = 1.0  # learning rates at the end of the quality stage
    cooldown_factor: float = 0.1  # and at the end of the cooldown stage, relative to that
    quality: StageConfig = field(default_factory=StageConfig)
    attacks: StageConfig = field(default_factory=StageConfig)
    cooldown: StageConfig = field(default_factory=lambda: StageConfig(gate=0.0))

    @classmethod
    def parse(cls, raw: dict) -> CurriculumConfig:
        if not isinstance(raw, dict):
            raise GenprintError(f"curriculum must be a mapping, got {raw!r}")
        try:
            stages = {name: StageConfig(**raw[name]) for name in STAGES if name in raw}
            rest = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k not in STAGES}
            config = cls(**rest, **stages)
        except TypeError as exc:
            raise GenprintError(f"curriculum: {exc}") from None
        lo, hi = config.psnr
        w0, wmin, wmax = config.weight
        if (
            not lo <= hi
            or not 0 < wmin <= w0 <= wmax
            or config.smoothing < 1
            or config.psnr_lag < 0
            or config.quality_lr_factor <= 0
            or config.cooldown_factor <= 0
        ):
            raise GenprintError(
                "curriculum: need psnr start <= end, 0 < weight min <= start <= max, smoothing >= 1, psnr_lag >= 0 and"
                f" positive lr factors; got {raw}"
            )
        for name in STAGES:
            stage = getattr(config, name)
            if stage.steps < 1 or not 0 <= stage.gate <= 1:
                raise GenprintError(f"curriculum.{name}: steps must be >= 1 and gate in [0, 1], got {asdict(stage)}")
        return config

    def to_dict(self) -> dict:
        return asdict(self)


class Curriculum:
    """The curriculum's state; `update` takes each step's stream metrics, the properties give the values to train at."""

    def __init__(self, config: CurriculumConfig):
        self.config = config
        self.progress = dict.fromkeys(STAGES, 0.0)
        self.accuracy = 0.5
        self.psnr: float | None = None  # the stream's smoothed PSNR; None until the first update
        self.log_weight = math.log(config.weight[0])
        self.finished_at: dict[str, int] = {}
        self.updates = 0

    @property
    def stage(self) -> str | None:
        """The stage now advancing, or None when all are done."""
        return next((name for name in STAGES if self.progress[name] < 1), None)

    @property
    def psnr_target(self) -> float:
        lo, hi = self.config.psnr
        return lo + (hi - lo) * self.progress["quality"]

    @property
    def quality_weight(self) -> float:
        return math.exp(self.log_weight)

    @property
    def attack_strength(self) -> float:
        return self.progress["attacks"]

    @property
    def lr_factor(self) -> float:
        c, progress = self.config, self.progress
        return c.quality_lr_factor ** progress["quality"] * (1 + (c.cooldown_factor - 1) * progress["cooldown"])

    def update(self, bit_accuracy: float, psnr: float, step: int) -> None:
        c = self.config
        rate = 1 / min(c.smoothing, self.updates + 1)  # a plain mean until `smoothing` steps are in
        self.updates += 1
        self.accuracy += rate * (bit_accuracy - self.accuracy)
        self.psnr = psnr if self.psnr is None else self.psnr + rate * (psnr - self.psnr)
        stage = self.stage
        at_gate = stage is None or self.accuracy >= getattr(c, stage).gate
        change = c.weight_rate * (self.psnr_target - psnr)
        if change < 0 or at_gate or psnr < c.psnr[0]:  # under the recipe's least quality it rises whatever the stream
            wmin, wmax = c.weight[1], c.weight[2]
            self.log_weight = min(max(self.log_weight + change, math.log(wmin)), math.log(wmax))
        lagging = stage == "quality" and self.psnr < self.psnr_target - c.psnr_lag  # the target waits for the stream
        if stage is not None and at_gate and not lagging:
            self.progress[stage] = min(1.0, self.progress[stage] + 1 / getattr(c, stage).steps)
            if self.progress[stage] >= 1:
                self.finished_at[stage] = step

    def summary(self) -> dict[str, float | str]:
        """What a log line or a learning-curve row records."""
        return {
            "stage": self.stage or "done",
            "stream_accuracy": round(self.accuracy, 4),
            "stream_psnr_smoothed": round(self.psnr, 2) if self.psnr is not None else None,
            "psnr_target": round(self.psnr_target, 2),
            "quality_weight": round(self.quality_weight, 4),
            "attack_strength": round(self.attack_strength, 4),
            "lr_factor": round(self.lr_factor, 4),
        }

    def state_dict(self) -> dict:
        return {
            "progress": dict(self.progress),
            "accuracy": self.accuracy,
            "psnr": self.psnr,
            "log_weight": self.log_weight,
            "finished_at": dict(self.finished_at),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.progress = {name: float(state["progress"][name]) for name in STAGES}
        self.accuracy, self.log_weight = float(state["accuracy"]), float(state["log_weight"])
        self.psnr = None if state.get("psnr") is None else float(state["psnr"])  # checkpoints before psnr_lag lack it
        self.finished_at = {k: int(v) for k, v in state["finished_at"].items()}
        self.updates = int(state["updates"])
