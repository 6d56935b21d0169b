"""Where the shared models and photos live: $GENPRINT_SHARED, else ../shared beside the checkout or the cwd."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
_REPO = Path(__file__).resolve().parent.parent


def shared_dir() -> Path | None:
    env = os.environ.get("GENPRINT_SHARED")
    if env:
        return Path(env) if Path(env).is_dir() else None
    for candidate in (_REPO.parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"):
        if candidate.is_dir():
            return candidate
    return None


def taef2_dir() -> Path | None:
    root = shared_dir()
    path = root / "models" / "taef2" if root else None
    return path if path and (path / "taef2_decoder.pth").exists() else None


def photos_dir() -> Path | None:
    root = shared_dir()
    path = root / "data" / "photos" if root else None
    return path if path and path.is_dir() else None


def kuberay_schemas_dir() -> Path | None:
    root = shared_dir()
    path = root / "schemas" / "kuberay-v1.7.0" if root else None
    return path if path and path.is_dir() else None
