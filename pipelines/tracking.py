"""MLflow experiment tracking and the two-model registry (extractor + generator side), kept out of the core.

Every registered bundle becomes two model versions created from one run: `genprint-generator` (decoder, reference
decoder, encoder, mapping network) and `genprint-extractor` (the fingerprint extractor). Each version carries tags
`model_id` (the bundle's content hash), `run_id`, `partner` (`NAME/VERSION` of the other half) and `sha256` (JSON
file -> digest). Resolving a version always pulls its tagged partner and checks the link both ways plus the model_id
inside both config.json files, so a generator is never served with an extractor it was not trained with.
Aliases (`candidate`, `production`) move as a pair.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from genprint import settings
from genprint.bundle import default_bundle, read_config
from genprint.errors import GenprintError
from genprint.storage import fetch_bundle, sha256_file

GENERATOR_MODEL = "genprint-generator"
EXTRACTOR_MODEL = "genprint-extractor"
MODELS = (GENERATOR_MODEL, EXTRACTOR_MODEL)
ALIASES = ("candidate", "production")
# Which bundle files make up each registered half; config.json travels with both (it holds the model_id).
PARTS = {
    GENERATOR_MODEL: (
        "config.json",
        "decoder.safetensors",
        "reference_decoder.safetensors",
        "encoder.safetensors",
        "mapping.safetensors",
    ),
    EXTRACTOR_MODEL: ("config.json", "extractor.safetensors"),
}
EXPERIMENT = "genprint"


def tracking_uri(flag: str | None = None) -> str:
    """--tracking-uri, else genprint.settings.tracking_uri() ($MLFLOW_TRACKING_URI or SQLite in $GENPRINT_HOME)."""
    if flag:
        return flag
    settings.home().mkdir(parents=True, exist_ok=True)
    return settings.tracking_uri()


def client(uri: str | None = None):
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri(uri)
    mlflow.set_tracking_uri(uri)  # the artifact helpers (download_artifacts) read the global URI
    return MlflowClient(tracking_uri=uri)


def experiment_id(mlc, name: str = EXPERIMENT) -> str:
    """The experiment's id, created on first use with artifacts under $GENPRINT_ARTIFACT_ROOT (a path or s3://),
    else next to the default SQLite database."""
    exp = mlc.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    root = settings.artifact_root()
    try:
        return mlc.create_experiment(name, artifact_location=f"{root.rstrip('/')}/{name}")
    except Exception:  # created concurrently by another process
        exp = mlc.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _flatten(config: dict, prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:500]  # MLflow's param value limit
    return flat


class RunTracker:
    """One MLflow run. `start` opens (or, for a resumed run name, reopens) it on the driver; `attach` lets a Ray
    worker log into the same run by id."""

    def __init__(self, mlc, run_id: str):
        self.client, self.run_id = mlc, run_id

    @classmethod
    def start(cls, run_name: str, config: dict, uri: str | None = None, experiment: str = EXPERIMENT) -> RunTracker:
        mlc = client(uri)
        exp = experiment_id(mlc, experiment)
        unfinished = mlc.search_runs(
            [exp],
            filter_string=f"tags.mlflow.runName = '{run_name}' and attributes.status != 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if unfinished:  # the same run name again: a resume, log into the same run
            run_id = unfinished[0].info.run_id
            mlc.update_run(run_id, status="RUNNING")
        else:
            run_id = mlc.create_run(exp, run_name=run_name).info.run_id
            from mlflow.entities import Param

            params = [Param(k, v) for k, v in _flatten(config).items()]
            for i in range(0, len(params), 100):  # log_batch takes at most 100 params per call
                mlc.log_batch(run_id, params=params[i : i + 100])
            mlc.log_dict(run_id, config, "config.json")
        return cls(mlc, run_id)

    @classmethod
    def attach(cls, run_id: str, uri: str | None = None) -> RunTracker:
        return cls(client(uri), run_id)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if isinstance(v, (int, float))]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_report(self, report: dict, plots: list[Path] = ()) -> None:
        self.client.log_dict(self.run_id, report, "eval/report.json")
        for plot in plots:
            self.client.log_artifact(self.run_id, str(plot), "eval")

    def log_history_plot(self, history: list[dict], out_dir: Path) -> Path:
        """Training curves (every numeric metric against step) as one PNG, logged under eval/."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = sorted({k for row in history for k, v in row.items() if k != "step" and isinstance(v, (int, float))})
        fig, axes = plt.subplots(len(names), 1, figsize=(6, 2 * max(1, len(names))), squeeze=False)
        for ax, name in zip(axes[:, 0], names):
            rows = [r for r in history if name in r]
            ax.plot([r["step"] for r in rows], [r[name] for r in rows])
            ax.set_ylabel(name, fontsize=8)
        axes[-1, 0].set_xlabel("step")
        fig.tight_layout()
        path = Path(out_dir) / "training_curves.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        self.client.log_artifact(self.run_id, str(path), "eval")
        return path

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)

    def register_bundle(self, bundle_dir: str | Path, alias: str | None = "candidate") -> dict[str, str]:
        """Log the bundle's two halves as run artifacts and register them as partner versions; returns {model name:
        version}."""
        return register_bundle(self.client, self.run_id, bundle_dir, alias)


def _ensure_registered_model(mlc, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mlc.get_registered_model(name)
    except MlflowException:
        try:
            mlc.create_registered_model(name, description="genprint " + name.split("-")[-1])
        except MlflowException:
            pass  # created concurrently


def register_bundle(mlc, run_id: str, bundle_dir: str | Path, alias: str | None = "candidate") -> dict[str, str]:
    bundle_dir = Path(bundle_dir)
    model_id = read_config(bundle_dir)["model_id"]
    versions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, files in PARTS.items():
            part = Path(tmp) / name
            part.mkdir()
            for file in files:
                if (bundle_dir / file).exists():
                    shutil.copyfile(bundle_dir / file, part / file)
            artifact_path = f"registered/{model_id}/{name}"
            mlc.log_artifacts(run_id, str(part), artifact_path)
            checksums = {p.name: sha256_file(p) for p in sorted(part.iterdir())}
            _ensure_registered_model(mlc, name)
            mv = mlc.create_model_version(
                name,
                source=f"runs:/{run_id}/{artifact_path}",
                run_id=run_id,
                tags={"model_id": model_id, "run_id": run_id, "sha256": json.dumps(checksums)},
            )
            versions[name] = str(mv.version)
    mlc.set_model_version_tag(
        GENERATOR_MODEL, versions[GENERATOR_MODEL], "partner", f"{EXTRACTOR_MODEL}/{versions[EXTRACTOR_MODEL]}"
    )
    mlc.set_model_version_tag(
        EXTRACTOR_MODEL, versions[EXTRACTOR_MODEL], "partner", f"{GENERATOR_MODEL}/{versions[GENERATOR_MODEL]}"
    )
    if alias:
        promote(mlc, GENERATOR_MODEL, versions[GENERATOR_MODEL], alias)
    return versions


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


def parse_model_uri(uri: str) -> ModelRef:
    """`models:/NAME@ALIAS`, `models:/NAME/VERSION`, or the same without the `models:/` prefix."""
    text = uri[len("models:/") :] if uri.startswith("models:/") else uri
    match = re.fullmatch(r"([\w.-]+)(?:@([\w-]+)|/(\d+))", text)
    if not match:
        raise GenprintError(f"{uri!r} is not a model reference: use models:/NAME@ALIAS or models:/NAME/VERSION")
    name, alias, version = match.groups()
    if name not in MODELS:
        raise GenprintError(f"unknown registered model {name!r}: genprint registers {', '.join(MODELS)}")
    return ModelRef(name, version, alias)


def get_version(mlc, ref: ModelRef):
    from mlflow.exceptions import MlflowException

    try:
        if ref.alias:
            return mlc.get_model_version_by_alias(ref.name, ref.alias)
        return mlc.get_model_version(ref.name, ref.version)
    except MlflowException as exc:
        raise GenprintError(
            f"{ref} not found in the model registry at {mlc.tracking_uri}: {exc.message.splitlines()[0]}"
        ) from None


def partner_of(mlc, mv):
    """The version `mv` was trained with, after checking the link holds both ways and names the same bundle."""
    link = mv.tags.get("partner", "")
    if "/" not in link:
        raise GenprintError(f"{mv.name} version {mv.version} has no partner tag: it was not registered by genprint")
    name, version = link.split("/", 1)
    partner = get_version(mlc, ModelRef(name, version))
    back = partner.tags.get("partner")
    if (
        back != f"{mv.name}/{mv.version}"
        or partner.tags.get("model_id") != mv.tags.get("model_id")
        or partner.run_id != mv.run_id
    ):
        raise GenprintError(
            f"{mv.name} v{mv.version} (model {mv.tags.get('model_id')}) and {name} v{version} "
            f"(model {partner.tags.get('model_id')}, partner {back}) were not trained together; refusing the pair"
        )
    return partner


def promote(mlc, name: str, version: str, alias: str) -> dict[str, str]:
    """Point `alias` at a version and at its partner: the two halves always move together."""
    if alias not in ALIASES:
        raise GenprintError(f"unknown alias {alias!r}: use one of {', '.join(ALIASES)}")
    mv = get_version(mlc, ModelRef(name, str(version)))
    partner = partner_of(mlc, mv)
    for v in (mv, partner):
        mlc.set_registered_model_alias(v.name, alias, v.version)
    return {mv.name: str(mv.version), partner.name: str(partner.version)}


def _download_part(mlc, mv, target: Path) -> None:
    """Fetch one registered half into target, verifying every file against the version's sha256 tag."""
    import mlflow.artifacts

    expected = json.loads(mv.tags.get("sha256", "{}"))
    if not expected:
        raise GenprintError(f"{mv.name} v{mv.version} has no sha256 tag: it was not registered by genprint")
    target.mkdir(parents=True, exist_ok=True)
    if all((target / f).is_file() and sha256_file(target / f) == d for f, d in expected.items()):
        return  # cached and intact
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=tmp, tracking_uri=mlc.tracking_uri)
        )
        for file, digest in expected.items():
            path = local / file
            if not path.is_file():
                raise GenprintError(f"{mv.name} v{mv.version} is missing {file} in its artifacts ({mv.source})")
            if sha256_file(path) != digest:
                raise GenprintError(
                    f"{mv.name} v{mv.version}: {file} is corrupted (sha256 mismatch with the registered checksum)"
                )
            shutil.copyfile(path, target / file)


def download_registered_bundle(
    uri: str, cache_dir: str | Path | None = None, tracking: str | None = None, partner_uri: str | None = None
) -> Path:
    """A local bundle directory for a registered model and its partner. With partner_uri (e.g. the extractor's
    production alias) the pair must also match it, otherwise GenprintError."""
    mlc = client(tracking)
    mv = get_version(mlc, parse_model_uri(uri))
    partner = partner_of(mlc, mv)
    if partner_uri is not None:
        wanted = get_version(mlc, parse_model_uri(partner_uri))
        if (wanted.name, wanted.version) != (partner.name, partner.version):
            raise GenprintError(
                f"{uri} (v{mv.version}) was trained with {partner.name} v{partner.version}, "
                f"not {partner_uri} (v{wanted.version}); refusing the pair"
            )
    versions = {mv.name: mv, partner.name: partner}
    gen, ext = versions[GENERATOR_MODEL], versions[EXTRACTOR_MODEL]
    root = Path(cache_dir or settings.cache_dir()) / "registry" / f"{mv.tags['model_id']}-g{gen.version}-e{ext.version}"
    _download_part(mlc, gen, root / "generator")
    _download_part(mlc, ext, root / "extractor")
    bundle = root / "bundle"
    bundle.mkdir(exist_ok=True)
    for part in (root / "generator", root / "extractor"):
        ids = read_config(part)["model_id"]
        if ids != mv.tags["model_id"]:
            raise GenprintError(
                f"{part.name} artifacts hold model {ids}, the registry says {mv.tags['model_id']}; refusing the pair"
            )
        for file in part.iterdir():
            shutil.copyfile(file, bundle / file.name)
    return bundle


def describe(mlc, mv) -> dict:
    """One version as a JSON-able dict (for `genprint models list|show`)."""
    info = {
        "name": mv.name,
        "version": str(mv.version),
        "aliases": list(mv.aliases),
        "model_id": mv.tags.get("model_id"),
        "run_id": mv.run_id,
        "partner": mv.tags.get("partner"),
        "created": mv.creation_timestamp,
    }
    try:
        run = mlc.get_run(mv.run_id)
        info["run_name"] = run.info.run_name
        info["metrics"] = run.data.metrics
    except Exception:  # a deleted run: the version is still listed
        pass
    return info


def list_versions(mlc) -> list:
    out = []
    for name in MODELS:
        found = sorted(mlc.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
        out.extend(mlc.get_model_version(name, v.version) for v in found)  # search results leave `aliases` empty
    return out


def resolve_model(uri: str | Path | None, cache_dir: str | Path | None = None) -> Path:
    """The one resolver the CLI, serving and the jobs use: None (the bundle shipped with genprint), a bundle path,
    `s3://...`, or `models:/NAME@ALIAS` / `models:/NAME/VERSION` (the MLflow model registry) -> a local bundle
    directory."""
    text = str(uri or "")
    if text.startswith("models:/"):
        return download_registered_bundle(text, cache_dir=cache_dir)
    return fetch_bundle(uri, cache_dir) if uri else default_bundle()
