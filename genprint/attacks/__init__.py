"""Image attacks: a differentiable stack for training and a real (PIL) suite for evaluation."""

from genprint.attacks.suite import ATTACK_SUITES, Attack, attack_suite
from genprint.attacks.train import TrainAttacks

__all__ = ["ATTACK_SUITES", "Attack", "attack_suite", "TrainAttacks"]
