"""The inversion reader: read a fingerprint by re-creating the image with the fingerprinted decoder.

The image was made as D(z; s(code)) for some latent z and code. Starting from z = encoder(image) and code = 0 (every
scale 1: the original decoder), Adam fits both so that the fingerprinted decoder reproduces the image; the fitted
code's signs are the bits. The CNN extractor has to learn to demodulate a content-dependent texture; this reader
uses the decoder itself as the model of that texture, so it needs no training beyond the mapping network's.
An upload is rarely the image as generated: brightness, contrast, colour, sharpening and JPEG are edits that act
(nearly) as one linear filter on the whole image. So the rendering passes through the k x k colour filter that best
maps it onto the upload, solved in closed form at every step, and pixels an edit clipped (or erased) are left out.
A rotated upload is read through the rotation: the reader finds the angle (`find_rotation`), starts from the de-rotated
image and turns each rendering by that angle before comparing, so the upload itself is never resampled twice.
It costs `steps` decoder forward and backward passes per image, so it is the forensic reader; the CNN (ONNX Runtime /
TensorRT) serves high-rate attribution. docs/research.md has the measurements behind each choice ("Fourth round" and
after), docs/results.md what it reads under each attack.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from genprint.errors import GenprintError
from genprint.extractor import check_images, grid_crop
from genprint.model import GenprintModel
from genprint.readers.base import Reader

# The fitted code is +-1 at the true fingerprint; this gain turns it into logits whose sigmoid reads as a confidence.
LOGIT_GAIN = 3.0
# Rotations searched by default, degrees either way: WOUAF's sweep goes to 30.
MAX_ROTATION = 30.0
# Fitting steps per image by default (docs/research.md, "Third round": where the fit stops gaining).
STEPS = 100


class InversionReader(Reader):
    """The forensic reader for one model (genprint.readers.Reader).
    `filter_size`: the edit model's filter (0: no edit model; 1: a colour transform only). `max_rotation`: the
    rotations searched, in degrees either way (0: none). `latent_lr` 0 holds the latents where they start."""

    def __init__(
        self,
        model: GenprintModel,
        steps: int = STEPS,
        latent_lr: float = 0.05,
        code_lr: float = 0.1,
        align: bool = True,
        filter_size: int = 5,
        max_rotation: float = MAX_ROTATION,
    ):
        if steps < 1 or latent_lr < 0 or code_lr <= 0:
            raise GenprintError(
                "inversion reader: steps must be >= 1, latent_lr >= 0 and code_lr > 0, "
                f"got {steps}, {latent_lr}, {code_lr}"
            )
        if filter_size < 0 or (filter_size and filter_size % 2 == 0):
            raise GenprintError(f"inversion reader: filter_size must be 0 (no edit model) or odd, got {filter_size}")
        if not 0 <= max_rotation <= 180:
            raise GenprintError(f"inversion reader: max_rotation must be 0 to 180 degrees, got {max_rotation}")
        self.model, self.steps, self.latent_lr, self.code_lr, self.align = model, steps, latent_lr, code_lr, align
        self.filter_size, self.max_rotation = filter_size, max_rotation
        self.nbits = model.nbits
        self.model_id = getattr(model, "bundle_config", {}).get("model_id", "in-memory")
        self.runtime = [f"inversion ({model._device()})"]

    def logits(self, images, latents: torch.Tensor | None = None, start_logits=None) -> np.ndarray:
        """images (B, 3, H, W) or (3, H, W) in [0, 1] -> bit logits (B, nbits). Each image is cropped to the decoder's
        grid: top-left as `genprint render` crops photos, or, with `align` and sides off the grid, where `_aligned`
        finds. `latents`: where the fit starts instead of the encoder's estimate, e.g. the latents the image was
        generated from, when they were kept (`benchmarks/latent_absorption.py` reads with them to tell what the fitted
        latent costs). `start_logits`: logits another reader gave (B, nbits), where the code's fit starts instead of
        at 0 (the cascade starts it from the CNN's read)."""
        target = torch.as_tensor(
            np.asarray(images, dtype=np.float32) if not torch.is_tensor(images) else images
        ).float()
        target = target[None] if target.ndim == 3 else target
        check_images(target.shape)
        model, m = self.model, self.model.adapter.downscale
        h, w = target.shape[-2:]
        target = target.to(model._device())
        model.eval()
        with torch.no_grad():
            # Sides that are multiples of m are taken to be on the grid (the generator's own output always is).
            target = self._aligned(target) if self.align and (h % m or w % m) else grid_crop(target, m)
            angles = torch.tensor(
                [self.find_rotation(x[None]) for x in target] if self.max_rotation else [0.0] * len(target)
            )
            turn = bool(angles.any())
            if latents is None:
                start = model.encode(rotated(target, -angles) if turn else target)
            else:
                shape = (len(target), model.adapter.latent_channels, target.shape[-2] // m, target.shape[-1] // m)
                if tuple(latents.shape) != shape:
                    raise GenprintError(
                        f"inversion reader: latents of shape {tuple(latents.shape)} given for images whose "
                        f"latents have shape {shape}"
                    )
                start = latents.to(target)
        latents = start.clone().requires_grad_(self.latent_lr > 0)
        valid = unclipped(target, self.filter_size)
        if turn:  # a turned rendering leaves the upload's corners uncovered: nothing there to compare
            valid = valid * (rotated(torch.ones_like(valid), angles) > 0.999)
        # Each image's loss is its own masked mean: each fit is its own problem (Adam is per element), whatever the
        # batch.
        pixel_weight = valid / (valid.flatten(1).sum(1).clamp(min=1) * 3)[:, None, None, None]
        code = torch.zeros(len(target), self.nbits, device=target.device)
        if start_logits is not None:  # the reader's own logit scale: code = logit / LOGIT_GAIN, within +-1
            code = torch.as_tensor(np.asarray(start_logits, dtype=np.float32), device=target.device)
            code = code.reshape(len(target), self.nbits)
            code = (code / LOGIT_GAIN).clamp(-1, 1)
        code.requires_grad_(True)
        groups = [{"params": [code], "lr": self.code_lr}] + (
            [{"params": [latents], "lr": self.latent_lr}] if self.latent_lr else []
        )
        fitted = [g["params"][0] for g in groups]
        optimizer = torch.optim.Adam(groups)
        with torch.enable_grad():
            for _ in range(self.steps):
                rendered = model.decode(latents, (code + 1) / 2)  # the mapping reads bits b as the code 2b - 1
                if turn:
                    rendered = rotated(rendered, angles)
                if self.filter_size:
                    rendered = edited(rendered, target, valid, self.filter_size)
                loss = ((rendered - target).pow(2) * pixel_weight).sum()
                # grad() rather than backward(): no gradient is computed for, or left on, the model's weights.
                for p, g in zip(fitted, torch.autograd.grad(loss, fitted)):
                    p.grad = g
                optimizer.step()
        return (code.detach() * LOGIT_GAIN).cpu().numpy()

    def _aligned(self, images: torch.Tensor) -> torch.Tensor:
        """Each image cropped at the offset (0..m-1 rows and columns) where the original autoencoder re-renders it best.
        An image the decoder made re-renders far better in the decoder's own grid phase, so a crop of it taken off that
        grid (a cropped upload) is put back on it before the fit; without a crop the offset found is 0. Searching rows
        and columns one after the other is not enough: a half-period offset re-renders nearly as well."""
        m = self.model.adapter.downscale
        h, w = ((s - (m - 1)) // m * m for s in images.shape[-2:])  # the same size at every offset
        offsets = [(a, b) for a in range(m) for b in range(m)]
        out = []
        for x in images:
            errors = []
            for chunk in range(0, len(offsets), m):  # m offsets per batch: faster than one by one, bounded memory
                crops = torch.stack([x[:, a : a + h, b : b + w] for a, b in offsets[chunk : chunk + m]])
                inner = (self.model.re_render(crops) - crops)[
                    ..., 2 * m : -2 * m, 2 * m : -2 * m
                ]  # borders re-render badly anyway
                errors += inner.pow(2).flatten(1).mean(1).tolist()
            a, b = offsets[int(np.argmin(errors))]
            out.append(x[:, a : a + h, b : b + w])
        return torch.stack(out)

    @torch.no_grad()
    def find_rotation(self, image: torch.Tensor) -> float:
        """The angle (degrees, counter-clockwise as PIL's `rotate`) by which `image` (1, 3, H, W) was turned about its
        centre, 0 if it was not. Each candidate is scored against the upload itself: the de-rotated image is re-rendered
        by the original autoencoder and rotated back. Scoring de-rotated candidates against themselves instead favours
        every resampled (smoother) one, so it cannot say "not rotated". The score peaks within about 1 degree on a
        256 px image, wider on a smaller window, so the search runs coarse to fine: 1 degree steps on a central window
        of 16 latent cells (128 px for TAEF2), then finer steps on larger ones."""
        m = self.model.adapter.downscale
        best = 0.0
        for stage, (window, span, step) in enumerate(
            ((16 * m, self.max_rotation, 1.0), (24 * m, 1.5, 0.25), (32 * m, 0.3, 0.1))
        ):
            angles = np.arange(best - span, best + span + step / 2, step).round(3)
            errors = np.concatenate(
                [self._rotation_errors(image, angles[i : i + m], window) for i in range(0, len(angles), m)]
            )
            best = float(angles[int(np.argmin(errors))])
            if stage == 0 and (best == 0 or not _stands_out(errors)):
                return 0.0
        return best

    def _rotation_errors(self, image: torch.Tensor, angles: np.ndarray, window: int) -> np.ndarray:
        """Mean squared error, on the central window of `image`, of its re-rendering through each rotation."""
        m = self.model.adapter.downscale
        # A window whose offset from the corner is a multiple of m keeps the decoder's grid phase.
        hw = [window - (window // m - s // m) % 2 * m if s > window else s for s in image.shape[-2:]]
        top, left = ((s - a) // 2 for s, a in zip(image.shape[-2:], hw))
        target = image[..., top : top + hw[0], left : left + hw[1]].expand(len(angles), -1, -1, -1)
        turns = torch.as_tensor(angles, dtype=image.dtype)
        rendered = rotated(self.model.re_render(rotated(image.expand(len(angles), -1, -1, -1), -turns, hw)), turns)
        # Every candidate is scored on the same pixels: a disc that the re-rendered window covers at any angle, away
        # from its border (which re-renders badly).
        y, x = torch.meshgrid(
            *(torch.arange(a, dtype=image.dtype, device=image.device) - (a - 1) / 2 for a in hw), indexing="ij"
        )
        disc = (y.pow(2) + x.pow(2) <= (min(hw) / 2 - 2 * m) ** 2).to(image.dtype)
        valid = unclipped(target, self.filter_size) * disc
        if self.filter_size:
            rendered = edited(rendered, target, valid, self.filter_size)
        return (
            (((rendered - target).pow(2) * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp(min=1))
            .cpu()
            .numpy()
        )


# How far (robust z-score of the log error) the best angle must stand out from the others to count as a rotation.
# Set between what real rotations and the spurious peaks of other edits scored (docs/results.md, the rotation rows).
ROTATION_Z = 4.5


def _stands_out(errors: np.ndarray) -> bool:
    log = np.log(np.maximum(errors, 1e-12))
    spread = 1.4826 * np.median(np.abs(log - np.median(log)))
    return spread > 0 and (np.median(log) - log.min()) / spread >= ROTATION_Z


def rotated(images: torch.Tensor, degrees: torch.Tensor, size: list[int] | None = None) -> torch.Tensor:
    """`images` (B, C, H, W) turned counter-clockwise by `degrees` (B,) about their centres, as PIL's `rotate` turns
    them, sampled bilinearly with black outside; the centred `size` (h, w) window of the result (default: all of it)."""
    b, _, h, w = images.shape
    oh, ow = size or (h, w)
    t = torch.deg2rad(degrees.to(images.device, images.dtype))
    cos, sin = torch.cos(t), torch.sin(t)
    # affine_grid works in coordinates normalised per axis: rescale so that the turn is a rotation in pixels.
    theta = torch.stack(
        [
            torch.stack([cos * ow / w, -sin * oh / w, torch.zeros_like(t)], 1),
            torch.stack([sin * ow / h, cos * oh / h, torch.zeros_like(t)], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, [b, images.shape[1], oh, ow], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def unclipped(images: torch.Tensor, filter_size: int) -> torch.Tensor:
    """(B, 1, H, W) 1 where no channel sits at 0 or 255 (clipped by an edit, or erased) and off the filter's border."""
    valid = ((images > 0.5 / 255) & (images < 254.5 / 255)).all(1, keepdim=True).float()
    r = filter_size // 2
    if r:
        valid[..., :r, :], valid[..., -r:, :], valid[..., :, :r], valid[..., :, -r:] = 0, 0, 0, 0
    return valid


def edited(
    rendered: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, k: int, ridge: float = 1e-3
) -> torch.Tensor:
    """`rendered` through the linear edit (a k x k colour filter plus an offset) that best maps it onto `target`.
    Solved in closed form per image; gradients pass through `rendered` only: at the optimum the filter's own
    gradient is zero. The ridge pulls it to the identity, so an unedited image keeps the plain fit."""
    b, c, h, w = rendered.shape
    cols = torch.nn.functional.unfold(rendered, k, padding=k // 2)  # (B, C*k*k, H*W)
    design = torch.cat([cols, torch.ones_like(cols[:, :1])], 1)  # (B, P, N)
    with torch.no_grad():
        wd = design * valid.flatten(2)
        gram = wd @ design.transpose(1, 2)  # (B, P, P)
        rhs = wd @ target.flatten(2).transpose(1, 2)  # (B, P, C)
        identity = torch.zeros(design.shape[1], c, device=rendered.device)
        identity[torch.arange(c) * k * k + k * k // 2, torch.arange(c)] = 1
        lam = ridge * gram.diagonal(dim1=1, dim2=2).mean(1)[:, None, None] + 1e-6  # > 0 when every pixel is masked
        eye = torch.eye(design.shape[1], device=rendered.device)
        weights = torch.linalg.solve(gram + lam * eye, rhs + lam * identity)  # (B, P, C)
    return (weights.transpose(1, 2) @ design).view(b, c, h, w)
