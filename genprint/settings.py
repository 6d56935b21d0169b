"""Every path and environment variable genprint reads, in one place (docs/configuration.md has the table).

Each function reads its variable when called, so tests and long-lived processes see changes; nothing here imports
torch, Ray or MLflow.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
PACKAGE = Path(__file__).resolve().parent


def variable(name: str) -> str | None:
    """One environment variable, None when unset or empty (serving reads its `GENPRINT_<SETTING>` forms with this)."""
    value = os.environ.get(name)
    return value if value else None


def shared_dir() -> Path | None:
    """$GENPRINT_SHARED, else a `shared` folder beside the checkout or the working directory: models and photos."""
    if env := variable("GENPRINT_SHARED"):
        return Path(env) if Path(env).is_dir() else None
    for candidate in (_REPO.parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"):
        if candidate.is_dir():
            return candidate
    return None


def _shared(*parts: str, marker: str = ".") -> Path | None:
    """shared_dir()/parts when it holds `marker` (by default: when it is a folder), else None."""
    root = shared_dir()
    path = root.joinpath(*parts) if root else None
    return path if path is not None and (path / marker).exists() else None


def taef2_dir() -> Path | None:
    """The pretrained TAEF2 weights (the default generator), or None."""
    return _shared("models", "taef2", marker="taef2_decoder.pth")


def photos_dir() -> Path | None:
    """The shared photos that training and evaluation use, or None."""
    return _shared("data", "photos")


def kuberay_schemas_dir() -> Path | None:
    """KubeRay's CRD schemas, which the chart tests validate against."""
    return _shared("schemas", "kuberay-v1.7.0")


def default_bundle_dir() -> Path:
    """The trained bundle shipped inside the package: what every verb uses when no --model is given."""
    return PACKAGE / "models" / "default"


def home() -> Path:
    """$GENPRINT_HOME (~/.genprint): the registry's SQLite file, MLflow's database and artifacts, Ray Train results."""
    return Path(variable("GENPRINT_HOME") or Path.home() / ".genprint").expanduser()


def cache_dir() -> Path:
    """$GENPRINT_CACHE (~/.cache/genprint): downloaded bundles, ONNX exports, fallback photos; safe to delete."""
    return Path(variable("GENPRINT_CACHE") or Path.home() / ".cache" / "genprint").expanduser()


def registry_url() -> str:
    """$GENPRINT_DB, else a SQLite file in home()."""
    return variable("GENPRINT_DB") or f"sqlite:///{home() / 'registry.db'}"


def api_key() -> str | None:
    """$GENPRINT_API_KEY: a tenant's key for the registry verbs."""
    return variable("GENPRINT_API_KEY")


def model_uri() -> str | None:
    """$GENPRINT_MODEL: the bundle `genprint serve` serves when --model is not given."""
    return variable("GENPRINT_MODEL")


def onnx_threads() -> int | None:
    """$GENPRINT_ORT_THREADS: ONNX Runtime intra-op threads (None: its default, all cores)."""
    value = variable("GENPRINT_ORT_THREADS")
    return int(value) if value else None


def tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else a SQLite file in home()."""
    return variable("MLFLOW_TRACKING_URI") or f"sqlite:///{home().resolve() / 'mlflow.db'}"


def artifact_root() -> str:
    """$GENPRINT_ARTIFACT_ROOT (a path or s3://...), else home()/mlartifacts: where MLflow keeps run artifacts."""
    return variable("GENPRINT_ARTIFACT_ROOT") or (home().resolve() / "mlartifacts").as_uri()


def ray_temp_dir() -> Path:
    """$GENPRINT_RAY_TMP, else a short folder under $TMPDIR: Ray puts Unix sockets there, whose paths must stay
    short."""
    return Path(variable("GENPRINT_RAY_TMP") or Path(variable("TMPDIR") or "/tmp") / f"rt-{os.getuid()}")
