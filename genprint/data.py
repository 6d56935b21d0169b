"""Photos for training and evaluation, and latent crops drawn from them (as WOUAF encodes real images).

Every photo is encoded once at full size; a training sample is a random window of its latent
(plus a random flip), so a step costs one decoder pass and no encoder pass.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from genprint.errors import GenprintError
from genprint.framing import reflect_frame
from genprint.settings import cache_dir, photos_dir

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def list_files(folder: str | Path, suffixes, kind: str) -> list[Path]:
    """The files of `folder` with one of `suffixes`, sorted; a missing folder or none found is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GenprintError(f"{folder} is not a directory of {kind}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)
    if not paths:
        raise GenprintError(f"no {kind} ({', '.join(sorted(suffixes))}) in {folder}")
    return paths


def list_images(folder: str | Path) -> list[Path]:
    return list_files(folder, IMAGE_SUFFIXES, "images")


def is_holdout(path: Path, fraction: float) -> bool:
    """Stable split by file name: a photo is held out for evaluation iff its hash falls below `fraction`."""
    h = int(hashlib.sha256(Path(path).name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < fraction


def split(paths: list[Path], holdout: float) -> tuple[list[Path], list[Path]]:
    train = [p for p in paths if not is_holdout(p, holdout)]
    test = [p for p in paths if is_holdout(p, holdout)]
    return train, test


def load_rgb(path: str | Path, multiple: int = 1) -> torch.Tensor:
    """(3, H, W) float in [0, 1]; cropped top-left to a multiple of `multiple` on each side."""
    try:
        with Image.open(path) as im:
            arr = np.array(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise GenprintError(f"{path} is not a readable image ({exc.__class__.__name__})") from None
    h, w = arr.shape[0] // multiple * multiple, arr.shape[1] // multiple * multiple
    if h == 0 or w == 0:
        raise GenprintError(f"{path} is smaller than {multiple} px")
    return torch.from_numpy(arr[:h, :w].copy()).permute(2, 0, 1).float() / 255


def save_rgb(image: torch.Tensor, path: str | Path) -> None:
    arr = (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    Image.fromarray(arr).save(path)


def fallback_photos(out_dir: Path) -> list[Path]:
    """scikit-image's bundled photos, written as PNGs: used when no shared photo folder exists."""
    from skimage import data as skdata

    out_dir.mkdir(parents=True, exist_ok=True)
    names = [
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "immunohistochemistry",
        "hubble_deep_field",
        "retina",
        "motorcycle_left",
        "cat",
    ]
    paths = []
    for name in names:
        try:
            arr = getattr(skdata, name)()
        except Exception:  # some need pooch downloads; skip those
            continue
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, -1)
        path = out_dir / f"skimage_{name}.png"
        if not path.exists():
            Image.fromarray(arr[..., :3].astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def resolve_photos(data: str | Path | None) -> list[Path]:
    if data:
        return list_images(data)
    found = photos_dir()
    if found:
        return list_images(found)
    log.warning("no shared photo folder (set GENPRINT_SHARED or --data): using scikit-image's bundled photos")
    return fallback_photos(cache_dir() / "skimage-photos")


class LatentBank:
    """Full-size latents of a set of photos; `sample` draws random latent windows with flips (`crop` px by default).

    With a `frame` (px), each window comes with that much context on each side (genprint.framing): the photo's own
    where it has it, else its reflection; the window itself always lies inside the photo."""

    def __init__(
        self, encode, paths: list[Path], downscale: int, crop: int, seed: int = 0, device="cpu", frame: int = 0
    ):
        if crop % downscale or frame % downscale:
            raise GenprintError(
                f"crop {crop} and frame {frame} must be multiples of the decoder's downscale factor {downscale}"
            )
        self.downscale = downscale
        self.pad = frame // downscale
        self.window = crop // downscale + 2 * self.pad
        self.latents = []
        with torch.no_grad():
            for p in paths:
                img = load_rgb(p, multiple=downscale).to(device)
                if min(img.shape[-2:]) < crop:
                    continue
                z = encode(img[None])
                if self.pad >= min(z.shape[-2:]):
                    side = min(img.shape[-2:])
                    raise GenprintError(f"a frame of {frame} px is too wide to reflect {p.name} ({side} px on a side)")
                self.latents.append(reflect_frame(z, frame, downscale)[0] if frame else z[0])
        if not self.latents:
            raise GenprintError(f"no training photo is at least {crop} px on each side")
        self.gen = torch.Generator().manual_seed(seed)

    def sample(self, batch: int, crop: int | None = None) -> torch.Tensor:
        """`batch` windows of `crop` px, the frame included (at most the bank's own window; default: that)."""
        out = []
        w = crop // self.downscale if crop else self.window
        if w > self.window:
            raise GenprintError(f"a bank of {self.window * self.downscale} px windows cannot give {crop} px")
        for _ in range(batch):
            z = self.latents[int(torch.randint(len(self.latents), (1,), generator=self.gen))]
            i = int(torch.randint(z.shape[1] - w + 1, (1,), generator=self.gen))
            j = int(torch.randint(z.shape[2] - w + 1, (1,), generator=self.gen))
            z = z[:, i : i + w, j : j + w]
            if torch.rand((), generator=self.gen) < 0.5:
                z = z.flip(-1)
            out.append(z)
        return torch.stack(out)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
