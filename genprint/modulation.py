"""WOUAF weight modulation: fingerprint bits -> mapping MLP -> one scale vector per modulated conv.

A conv whose weight is scaled per input channel, W'[o, i] = W[o, i] * s[i], computes exactly
what the unmodified conv computes on the input scaled per channel (zero padding stays zero).
That identity gives the two forms genprint uses:
  (a) per-sample: forward pre-hooks multiply each conv's input by that sample's scales, so one
      batch can hold many users and the weights never change;
  (b) baked: the scales of one user are multiplied into a copy of the weights, giving a plain
      decoder with no mapping network in it (what a user is shipped).
"""

from __future__ import annotations

import copy
import fnmatch
from contextlib import contextmanager

import torch
from torch import nn

from genprint.errors import GenprintError

# What a fingerprint may modulate: convolutions over images or over sound, and transposed ones (upsampling layers).
CONVS = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d)


def select_convs(decoder: nn.Module, patterns: list[str]) -> list[str]:
    """Names of the convolutions (CONVS) matching any glob pattern, in module order."""
    convs = {name: m for name, m in decoder.named_modules() if isinstance(m, CONVS)}
    chosen = [name for name in convs if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
    if not chosen:
        raise GenprintError(f"no convolution of the decoder matches {patterns}; some names: {list(convs)[:6]}")
    return chosen


class MappingNetwork(nn.Module):
    """bits (B, n) -> list of per-input-channel scales (B, C_k), one per modulated conv.

    s = 1 + scale_range * tanh(affine_k(mlp(bits))). The affines start at zero, so every scale
    is exactly 1 at initialisation: the fingerprinted decoder starts as the original one. They have
    no bias: a user-independent offset would be a plain weight change (the decoder's job), and in
    practice it drifts all users' scales together into tanh saturation, which stops learning.
    With depth 0 the map is linear in the +-1 bits, so scales are zero-mean over users.
    """

    def __init__(self, nbits: int, channels: list[int], hidden: int = 256, depth: int = 2, scale_range: float = 0.5):
        super().__init__()
        self.config = dict(nbits=nbits, channels=list(channels), hidden=hidden, depth=depth, scale_range=scale_range)
        layers: list[nn.Module] = []
        width = nbits
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        self.mlp = nn.Sequential(*layers)
        self.affines = nn.ModuleList(nn.Linear(width, c, bias=False) for c in channels)
        for a in self.affines:
            nn.init.zeros_(a.weight)
        self.scale_range = scale_range

    def forward(self, bits: torch.Tensor) -> list[torch.Tensor]:
        if bits.ndim != 2 or bits.shape[1] != self.config["nbits"]:
            raise GenprintError(f"bits must have shape (batch, {self.config['nbits']}), got {tuple(bits.shape)}")
        w = self.mlp(bits.float() * 2 - 1)
        return [1 + self.scale_range * torch.tanh(a(w)) for a in self.affines]


class Modulator:
    """Form (a): per-sample input-channel scaling of named convs through forward pre-hooks.

    Outside `active(scales)` the hooks do nothing, so the same decoder also decodes unmodulated. One decode at a
    time per Modulator (the scales are its state).
    """

    def __init__(self, decoder: nn.Module, conv_names: list[str]):
        self.decoder = decoder
        self.conv_names = list(conv_names)
        modules = dict(decoder.named_modules())
        self.convs = [modules[n] for n in self.conv_names]
        # Without grad, an input that only its conv reads is scaled in place: half the cost of writing a new tensor,
        # and most of what per-sample modulation costs (README, "Serving").
        self._own_input = [_reads_fresh_activation(modules, n) for n in self.conv_names]
        self._scales: list[torch.Tensor] | None = None
        self._handles = [conv.register_forward_pre_hook(self._hook(i)) for i, conv in enumerate(self.convs)]

    @property
    def channels(self) -> list[int]:
        return [c.in_channels for c in self.convs]

    def _hook(self, index: int):
        def scale_input(module, args):
            if self._scales is None:
                return None
            s = self._scales[index]
            x = args[0]
            if s.shape[0] != x.shape[0]:
                raise GenprintError(f"{s.shape[0]} fingerprints for a batch of {x.shape[0]} latents")
            s = s.to(x.dtype).reshape(s.shape + (1,) * (x.ndim - 2))  # (B, C, 1[, 1]): one scale per channel
            if self._own_input[index] and not torch.is_grad_enabled():  # with grad, autograd may have saved x
                return (x.mul_(s),) + tuple(args[1:])
            return (x * s,) + tuple(args[1:])

        return scale_input

    @contextmanager
    def active(self, scales: list[torch.Tensor]):
        if len(scales) != len(self.convs):
            raise GenprintError(f"{len(scales)} scale vectors for {len(self.convs)} modulated convs")
        self._scales = scales
        try:
            yield
        finally:
            self._scales = None

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


# Activations that return a new tensor unless built with inplace=True.
FRESH_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.ELU, nn.SiLU, nn.GELU, nn.Mish)


def _reads_fresh_activation(modules: dict[str, nn.Module], name: str) -> bool:
    """Whether conv `name` follows an activation inside an nn.Sequential, so that its input is a tensor made for it
    alone (TAE blocks: the second and third convs). A residual block's first conv shares its input with the skip."""
    parent, _, index = name.rpartition(".")
    container = modules.get(parent)
    if not isinstance(container, nn.Sequential) or not index.isdigit() or int(index) == 0:
        return False
    before = container[int(index) - 1]
    return isinstance(before, FRESH_ACTIVATIONS) and not getattr(before, "inplace", False)


def input_axis(conv: nn.Module) -> int:
    """The weight dimension of a conv's input channels: 1, or 0 for a transposed conv."""
    return 0 if isinstance(conv, (nn.ConvTranspose1d, nn.ConvTranspose2d)) else 1


def per_input_channel(conv: nn.Module, values: torch.Tensor) -> torch.Tensor:
    """`values` (one per input channel) shaped to broadcast against the conv's weight."""
    shape = [1] * conv.weight.ndim
    shape[input_axis(conv)] = -1
    return values.reshape(shape)


def bake(decoder: nn.Module, conv_names: list[str], scales: list[torch.Tensor]) -> nn.Module:
    """Form (b): a copy of `decoder` with one user's scales multiplied into its conv weights."""
    baked = copy.deepcopy(decoder)
    baked._forward_pre_hooks.clear()
    modules = dict(baked.named_modules())
    with torch.no_grad():
        for name, s in zip(conv_names, scales):
            conv = modules[name]
            conv._forward_pre_hooks.clear()
            conv.weight.mul_(per_input_channel(conv, s.reshape(-1)).to(conv.weight.dtype))
    return baked
