"""The Helm chart, rendered offline (helm-python-sdk) and validated like an API server would.

Core objects go through kubernetes-validate (strict: unknown fields are errors); RayService/RayJob go through the
KubeRay v1.7.0 CRDs' openAPIV3Schema, made strict the same way (an API server with strict field validation
rejects unknown fields). The serve config and the training entrypoint must point at code in this repository.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import re
import shlex
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

helm = pytest.importorskip("helm_python")

from genprint.settings import kuberay_schemas_dir  # noqa: E402

# Ray Serve's schema module trips pydantic's deprecation warnings on import.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "genprint"
GPU_VALUES = CHART / "values-gpu-production.yaml"
KUBE_VERSIONS = ["1.27.0", "1.37.0"]  # the chart's kubeVersion floor and the newest schema kubernetes-validate ships
# What every install must name: the three Secrets and the model to serve.
SECRETS = {
    "s3": {"existingSecret": "genprint-s3"},
    "registry": {"existingSecret": "genprint-registry-db"},
    "mlflow": {"backendStore": {"existingSecret": "genprint-mlflow-db"}},
    "serve": {"model": "models:/genprint-generator@production"},
}
# Environment variables that carry credentials: each must come from a Secret, never a literal value.
SECRET_ENV = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "GENPRINT_REGISTRY_URL",
    "MLFLOW_BACKEND_STORE_URI",
    "MLFLOW_REGISTRY_STORE_URI",
}
RAY_KINDS = {"RayService": "ray.io_rayservices.yaml", "RayJob": "ray.io_rayjobs.yaml"}
STANDARD_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/component",
}


def merged(*layers: dict) -> dict:
    out: dict = {}
    for layer in layers:
        _merge_into(out, copy.deepcopy(layer))
    return out


def _merge_into(base: dict, over: dict) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge_into(base[key], value)
        else:
            base[key] = value


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(str(CHART)) as loaded:
        yield loaded


def render(chart, values: dict) -> list[dict]:
    """Every object the chart renders (NOTES.txt excluded) for these values."""
    manifests = chart.render(values, name="gp", namespace="genprint")
    objects = []
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def gpu_values() -> dict:
    return yaml.safe_load(GPU_VALUES.read_text())


VALUE_SETS = {
    "defaults": SECRETS,
    "defaults+train": merged(SECRETS, {"train": {"enabled": True}}),
    "gpu-production": gpu_values(),
}


@pytest.fixture(scope="module", params=list(VALUE_SETS))
def rendered(chart, request):
    return request.param, render(chart, VALUE_SETS[request.param])


# --- schemas ---------------------------------------------------------------------------------------------------
def _strict(schema):
    """Forbid unknown fields wherever the CRD lists the known ones (what `kubectl --validate=strict` enforces)."""
    if isinstance(schema, dict):
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema = {**schema, "additionalProperties": False}
        return {k: _strict(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def crd_validators():
    root = kuberay_schemas_dir()
    if root is None:
        pytest.skip("KubeRay v1.7.0 CRDs not found (set GENPRINT_SHARED)")
    validators = {}
    for kind, filename in RAY_KINDS.items():
        crd = yaml.safe_load((root / filename).read_text())
        assert crd["spec"]["names"]["kind"] == kind
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        schema = _strict(version["schema"]["openAPIV3Schema"])
        jsonschema.Draft7Validator.check_schema(schema)
        validators[kind] = jsonschema.Draft7Validator(schema)
    return validators


def test_every_core_manifest_is_valid_kubernetes(rendered):
    _, objects = rendered
    core = [o for o in objects if o["kind"] not in RAY_KINDS]
    assert {o["kind"] for o in core} >= {"Deployment", "Service"}
    for obj in core:
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(
                    f"{obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {version}: "
                    f"{'.'.join(map(str, e.path))}: {e.message}"
                )


def test_ray_objects_match_kuberay_crds(rendered, crd_validators):
    name, objects = rendered
    ray_objects = [o for o in objects if o["kind"] in RAY_KINDS]
    expected = {"RayService", "RayJob"} if name != "defaults" else {"RayService"}
    assert {o["kind"] for o in ray_objects} == expected
    for obj in ray_objects:
        assert obj["apiVersion"] == "ray.io/v1"
        # kubernetes-validate knows only built-in kinds; the CRD schema is the authority here.
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate(obj, KUBE_VERSIONS[-1], strict=True)
        errors = sorted(crd_validators[obj["kind"]].iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{obj['kind']}: {'.'.join(map(str, e.path))}: {e.message}" for e in errors[:10])


def test_crd_validation_catches_a_misspelt_field(chart, crd_validators):
    """The strict CRD check is not vacuous: a typo deep inside the pod template is rejected."""
    (service,) = by_kind(render(chart, SECRETS), "RayService")
    assert crd_validators["RayService"].is_valid(service)
    broken = copy.deepcopy(service)
    broken["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "x"
    assert not crd_validators["RayService"].is_valid(broken)
    broken = copy.deepcopy(service)
    broken["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = "four"
    assert not crd_validators["RayService"].is_valid(broken)


def test_helm_lint_is_clean():
    for values in (SECRETS, gpu_values()):
        report = helm.lint(str(CHART), values, strict=True, namespace="genprint")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, problems


# --- secrets ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "missing, message",
    [
        ("s3", "s3.existingSecret is required"),
        ("registry", "registry.existingSecret is required"),
        ("mlflow", "mlflow.backendStore.existingSecret is required"),
        ("serve", "serve.model is required"),
    ],
)
def test_missing_secret_reference_fails_to_render_clearly(chart, missing, message):
    values = {k: v for k, v in SECRETS.items() if k != missing}
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        chart.render(values, name="gp", namespace="genprint")


def test_external_mlflow_needs_no_backend_secret_but_a_tracking_uri(chart):
    values = merged({k: v for k, v in SECRETS.items() if k != "mlflow"}, {"mlflow": {"enabled": False}})
    with pytest.raises(helm.HelmRenderError, match=re.escape("mlflow.external.trackingUri is required")):
        chart.render(values, name="gp", namespace="genprint")
    values["mlflow"]["external"] = {"trackingUri": "https://mlflow.example.com"}
    objects = render(chart, values)
    assert not by_kind(objects, "Deployment")
    env = _env(
        by_kind(objects, "RayService")[0]["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"][
            "containers"
        ][0]
    )
    assert env["MLFLOW_TRACKING_URI"]["value"] == "https://mlflow.example.com"


@pytest.mark.parametrize(
    "literal",
    [
        {"s3": {"secretAccessKey": "hunter2"}},
        {"registry": {"url": "postgresql://u:p@db/x"}},
        {"mlflow": {"backendStore": {"password": "hunter2"}}},
    ],
)
def test_literal_credentials_in_values_are_refused(chart, literal):
    with pytest.raises(helm.HelmValuesError, match="additional properties"):
        chart.render(merged(SECRETS, literal), name="gp", namespace="genprint")


def _containers(objects: list[dict]):
    """(owner, pod template) for every pod the objects would create."""
    for obj in objects:
        spec = obj["spec"]
        if obj["kind"] == "Deployment":
            yield obj, spec["template"]
        elif obj["kind"] in RAY_KINDS:
            cluster = spec.get("rayClusterConfig") or spec["rayClusterSpec"]
            yield obj, cluster["headGroupSpec"]["template"]
            for group in cluster.get("workerGroupSpecs", []):
                yield obj, group["template"]


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_credentials_only_come_from_secret_refs(rendered):
    name, objects = rendered
    values = VALUE_SETS[name]
    expected_secrets = {
        values["s3"]["existingSecret"],
        values["registry"]["existingSecret"],
        values["mlflow"]["backendStore"]["existingSecret"],
    }
    used = set()
    for owner, template in _containers(objects):
        for container in template["spec"]["containers"]:
            for env_name, env in _env(container).items():
                if env_name in SECRET_ENV:
                    assert "value" not in env, f"{owner['kind']}: {env_name} is a literal"
                    used.add(env["valueFrom"]["secretKeyRef"]["name"])
            assert "AWS_SECRET_ACCESS_KEY" in _env(container), (
                f"{owner['kind']}/{container['name']} has no S3 credentials"
            )
    assert used == expected_secrets


# --- what the objects say ---------------------------------------------------------------------------------------
def test_standard_labels_everywhere(rendered):
    _, objects = rendered
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert STANDARD_LABELS <= set(labels), f"{obj['kind']} lacks {STANDARD_LABELS - set(labels)}"
        assert labels["app.kubernetes.io/managed-by"] == "Helm" and labels["app.kubernetes.io/instance"] == "gp"
    for owner, template in _containers(objects):
        assert STANDARD_LABELS <= set(template["metadata"]["labels"]), owner["kind"]
    for deployment in by_kind(objects, "Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        (service,) = [s for s in by_kind(objects, "Service") if s["spec"]["selector"] == selector]
        assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_every_container_has_requests_limits_and_runs_as_non_root(rendered):
    _, objects = rendered
    for owner, template in _containers(objects):
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True
        for container in template["spec"]["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"]), (
                f"{owner['kind']}/{container['name']}"
            )
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_serve_ingress_probes_on_workers_only(rendered):
    _, objects = rendered
    (service,) = by_kind(objects, "RayService")
    cluster = service["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    # The head carries no replicas (num-cpus 0) and is left out of the serve Service, so KubeRay's own probes apply.
    assert (
        cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0" and service["spec"]["excludeHeadPodFromServeSvc"]
    )
    assert "readinessProbe" not in head
    for group in cluster["workerGroupSpecs"]:
        (worker,) = group["template"]["spec"]["containers"]
        assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8000}
        assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8000}
    (mlflow,) = by_kind(objects, "Deployment")
    assert mlflow["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/health"


def test_default_cluster_autoscales_on_cpu_only(chart):
    objects = render(chart, SECRETS)
    cluster = by_kind(objects, "RayService")[0]["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["autoscalerOptions"]["upscalingMode"] == "Default"
    assert [g["groupName"] for g in cluster["workerGroupSpecs"]] == ["cpu"]
    (worker,) = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"]
    assert worker["image"] == f"ghcr.io/genprint/genprint:{chart.metadata['appVersion']}-cpu"
    assert "nvidia.com/gpu" not in worker["resources"]["limits"]


def test_gpu_production_values_reach_the_gpu_group(chart):
    values = gpu_values()
    objects = render(chart, values)
    cluster = by_kind(objects, "RayService")[0]["spec"]["rayClusterConfig"]
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    gpu = groups["gpu"]
    want = values["rayCluster"]["gpuWorkers"]
    assert (gpu["minReplicas"], gpu["maxReplicas"]) == (want["minReplicas"], want["maxReplicas"])
    pod = gpu["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == want["gpus"]
    assert container["image"] == f"{values['gpuImage']['repository']}:{values['gpuImage']['tag']}"
    assert pod["nodeSelector"] == want["nodeSelector"] and pod["tolerations"] == want["tolerations"]
    assert pod["imagePullSecrets"] == [{"name": "registry-example-com"}]
    assert "nvidia.com/gpu" not in groups["cpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert cluster["autoscalerOptions"]["upscalingMode"] == "Conservative"
    assert cluster["autoscalerOptions"]["idleTimeoutSeconds"] == 300
    env = _env(container)
    assert env["AWS_ENDPOINT_URL_S3"]["value"] == values["s3"]["endpoint"]
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://gp-genprint-mlflow.genprint.svc:5000"


def _parse_entrypoint(entrypoint: str):
    """The RayJob's command, parsed by `genprint train`'s own argument parser."""
    argv = shlex.split(entrypoint)
    assert argv[:2] == ["genprint", "train"], argv
    cli = _repo_module("genprint.cli", "train RayJob entrypoint")
    try:
        return cli.build_parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"genprint train rejects the RayJob entrypoint: {entrypoint}")


def test_training_rayjob(chart):
    values = merged(
        gpu_values(),
        {
            "rayCluster": {
                "extraVolumes": [{"name": "photos", "persistentVolumeClaim": {"claimName": "photos"}}],
                "extraVolumeMounts": [{"name": "photos", "mountPath": "/data/photos", "readOnly": True}],
            },
            "train": {"data": "/data/photos", "extraArgs": ["--eval"]},
        },
    )
    (job,) = by_kind(render(chart, values), "RayJob")
    spec = job["spec"]
    train = values["train"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] == train["ttlSecondsAfterFinished"]
    assert spec["activeDeadlineSeconds"] == train["activeDeadlineSeconds"]
    args = _parse_entrypoint(spec["entrypoint"])
    assert (args.config, args.workers, args.checkpoints, args.name) == (
        train["config"],
        train["workers"],
        train["storage"],
        train["runName"],
    )
    assert (
        args.gpus_per_worker == values["rayCluster"]["gpuWorkers"]["gpus"]
        and args.cpus_per_worker == 6
        and args.ray_address == "auto"
    )
    assert args.out == "s3://genprint-prod/bundles/genprint-prod" and args.data == "/data/photos" and args.eval
    cluster = spec["rayClusterSpec"]
    # One worker pod per rank on the GPU group; a fixed-size cluster (the job's own, deleted afterwards).
    assert cluster["enableInTreeAutoscaling"] is False and "autoscalerOptions" not in cluster
    (group,) = cluster["workerGroupSpecs"]
    assert group["groupName"] == "gpu"
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == train["workers"]
    pod = group["template"]["spec"]
    assert {"name": "photos", "persistentVolumeClaim": {"claimName": "photos"}} in pod["volumes"]
    assert {"name": "photos", "mountPath": "/data/photos", "readOnly": True} in pod["containers"][0]["volumeMounts"]
    # Defaults: CPU ranks, storage and bundles in the chart's bucket.
    (job,) = by_kind(render(chart, merged(SECRETS, {"train": {"enabled": True}})), "RayJob")
    args = _parse_entrypoint(job["spec"]["entrypoint"])
    assert args.gpus_per_worker == 0 and args.checkpoints == "s3://genprint/ray-results"
    assert args.out == "s3://genprint/bundles/genprint-train"
    assert [g["groupName"] for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]] == ["cpu"]


def test_mlflow_server_uses_postgres_secret_and_s3_artifacts(chart):
    values = merged(SECRETS, {"mlflow": {"registryStore": {"existingSecret": "genprint-mlflow-registry"}}})
    objects = render(chart, values)
    (deployment,) = by_kind(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["mlflow", "server"] and "--serve-artifacts" in container["args"]
    env = _env(container)
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"] == {"name": "genprint-mlflow-db", "key": "url"}
    assert env["MLFLOW_REGISTRY_STORE_URI"]["valueFrom"]["secretKeyRef"]["name"] == "genprint-mlflow-registry"
    assert env["MLFLOW_ARTIFACTS_DESTINATION"]["value"] == "s3://genprint/mlflow"
    assert "gp-genprint-mlflow:*" in env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    (service,) = [s for s in by_kind(objects, "Service") if s["metadata"]["name"] == "gp-genprint-mlflow"]
    assert service["spec"]["ports"][0]["port"] == 5000


def test_notes_render(chart):
    notes = chart.render(merged(SECRETS, {"train": {"enabled": True}}), name="gp", namespace="genprint")
    text = next(v for k, v in notes.items() if k.endswith("NOTES.txt"))
    assert "port-forward svc/gp-genprint-serve-svc 8000:8000" in text and "rayjob gp-genprint-train" in text


# --- the chart points at real code ------------------------------------------------------------------------------
def _repo_module(name: str, what: str):
    """Import `name` and insist it is this repository's code, with a message saying which value to fix."""
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        spec = None
    if spec is None or spec.origin is None:
        pytest.fail(f"{what}: module {name!r} does not exist in the repository ({REPO})")
    assert Path(spec.origin).resolve().is_relative_to(REPO), f"{what}: {name} resolves outside the repo: {spec.origin}"
    return importlib.import_module(name)


def _built_app(service: dict, app: dict, monkeypatch):
    """Build the Serve application the way Serve does on the cluster: import the path, call a builder with the
    app's args, with the environment the chart gives the Ray pods. Returns Ray's BuiltApplication."""
    from ray.serve import Application
    from ray.serve._private.build_app import build_app

    pod = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    for name, env in _env(pod).items():
        if "value" in env:
            monkeypatch.setenv(name, env["value"])
    module_name, attr = app["import_path"].split(":")
    module = _repo_module(module_name, f"serve.config app {app['name']!r} (import_path {app['import_path']})")
    assert hasattr(module, attr), f"serve.config app {app['name']!r}: {module_name} has no attribute {attr!r}"
    target = getattr(module, attr)
    application = target if isinstance(target, Application) else target(app.get("args") or {})
    assert isinstance(application, Application), f"{app['import_path']} is neither an Application nor a builder of one"
    return build_app(application, name=app["name"])


@pytest.mark.parametrize("values_name", ["defaults", "gpu-production"])
def test_serve_config_is_valid_and_builds_from_repo_code(chart, values_name, monkeypatch):
    from ray.serve.schema import ServeDeploySchema

    (service,) = by_kind(render(chart, VALUE_SETS[values_name]), "RayService")
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(config)  # what KubeRay hands to Serve's REST API
    deployments = set()
    for app in config["applications"]:
        built = _built_app(service, app, monkeypatch)
        names = {d.name for d in built.deployments}
        overridden = {d["name"] for d in app.get("deployments", [])}
        assert overridden <= names, (
            f"serve.config app {app['name']!r} overrides unknown deployments {overridden - names}"
        )
        deployments |= names
    # The app serves generation and attribution behind the ingress.
    assert {"generation", "attribution", "ingress"} <= deployments, deployments


def _paths(routes, prefix: str = ""):
    for route in routes:
        if hasattr(route, "path"):
            yield prefix + route.path
        router = getattr(route, "original_router", route)  # an included router (FastAPI keeps it whole)
        if hasattr(router, "routes"):
            context = getattr(route, "include_context", route)
            yield from _paths(router.routes, prefix + (getattr(context, "prefix", "") or ""))


def test_ingress_probe_paths_are_routes_of_the_ingress(chart, monkeypatch):
    from fastapi import FastAPI

    (service,) = by_kind(render(chart, SECRETS), "RayService")
    (app,) = [
        a for a in yaml.safe_load(service["spec"]["serveConfigV2"])["applications"] if a.get("route_prefix") == "/"
    ]
    built = _built_app(service, app, monkeypatch)
    (ingress,) = [d for d in built.deployments if d.name == built.ingress_deployment_name]
    module = importlib.import_module(getattr(ingress.func_or_class, "__wrapped__", ingress.func_or_class).__module__)
    routes = {path for v in vars(module).values() if isinstance(v, FastAPI) for path in _paths(v.routes)}
    probes = chart.values["serve"]["probes"]
    assert {probes["readiness"]["httpGet"]["path"], probes["liveness"]["httpGet"]["path"]} <= routes, routes


def test_rayjob_entrypoint_module_and_config_exist_in_repo(chart):
    from genprint.config import load_config

    (job,) = by_kind(render(chart, merged(SECRETS, {"train": {"enabled": True}})), "RayJob")
    load_config(_parse_entrypoint(job["spec"]["entrypoint"]).config)  # shipped with genprint, or GenprintError


# --- images -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_images_run_as_the_non_root_user_the_chart_expects(chart, dockerfile):
    text = (REPO / "infra" / dockerfile).read_text()
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and users[-1] not in {"root", "0", "0:0"}, f"{dockerfile} must end as a non-root USER"
    uid = re.search(r"useradd[^\n]*--uid\s+(\d+)", text)
    assert uid, f"{dockerfile} must create its user with a fixed uid"
    assert int(uid.group(1)) == chart.values["podSecurityContext"]["runAsUser"]
    assert users[-1] in {uid.group(1), f"{uid.group(1)}:{uid.group(1)}"}, (
        "USER must be numeric so runAsNonRoot can verify it"
    )
    extra = "gpu" if dockerfile.endswith("cuda") else "ray"
    assert re.search(rf"\[[^\]]*\b{extra}\b[^\]]*\]", text), f"{dockerfile} must install the {extra!r} extra"
    assert "wget" in text, "KubeRay's default probes call wget inside the Ray containers"
