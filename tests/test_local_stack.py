"""infra/local_stack.py for real: SeaweedFS, PostgreSQL and MLflow start on loopback, serve, stop, and come back."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "infra" / "local_stack.py"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def stack(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


@pytest.fixture
def stack_dir(tmp_path):
    d = tmp_path / "stack"
    yield d
    stack("stop", "--dir", str(d), "--purge")


def _log_run(tracking_uri: str, marker: str) -> str:
    """A run with a metric and an artifact, through the server (artifacts proxied to S3); returns the run id."""
    code = f"""
import mlflow, tempfile, pathlib
mlflow.set_tracking_uri({tracking_uri!r})
mlflow.set_experiment("local-stack-test")
with mlflow.start_run() as run:
    mlflow.log_metric("bit_accuracy", 0.97)
    p = pathlib.Path(tempfile.mkdtemp()) / "note.txt"; p.write_text({marker!r})
    mlflow.log_artifact(str(p))
print(run.info.run_id)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}  # the client needs no S3 keys
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_stack_starts_serves_stops_and_keeps_data(stack_dir):
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 server binaries not installed")
    import boto3
    import sqlalchemy

    started = stack("start", "--dir", str(stack_dir), "--backend", "postgres")
    assert started.returncode == 0, started.stderr
    env = read_env(stack_dir / "stack.env")
    assert (stack_dir / "stack.env").stat().st_mode & 0o077 == 0, "the env file holds credentials: owner-only"
    assert (stack_dir / "seaweedfs" / "s3.sock").is_socket(), "weed's S3 socket belongs in the stack's folder, not /tmp"
    assert env["GENPRINT_REGISTRY_URL"].startswith("postgresql+psycopg://")
    assert all("127.0.0.1" in env[k] for k in ("AWS_ENDPOINT_URL_S3", "MLFLOW_TRACKING_URI", "GENPRINT_REGISTRY_URL"))

    report = stack("status", "--dir", str(stack_dir))
    assert report.returncode == 0, report.stdout + report.stderr
    services = json.loads(report.stdout.strip().splitlines()[-1])["services"]
    assert set(services) == {"postgres", "seaweedfs", "mlflow"}

    # A second start is refused while the first runs.
    again = stack("start", "--dir", str(stack_dir))
    assert again.returncode == 2 and "already running" in again.stderr

    engine = sqlalchemy.create_engine(env["GENPRINT_REGISTRY_URL"])
    with engine.connect() as conn:
        assert "PostgreSQL" in conn.execute(sqlalchemy.text("select version()")).scalar_one()
    engine.dispose()

    run_id = _log_run(env["MLFLOW_TRACKING_URI"], "fingerprinted")
    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL_S3"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="genprint", Prefix="mlflow/").get("Contents", [])]
    (key,) = [k for k in keys if run_id in k and k.endswith("note.txt")]
    assert s3.get_object(Bucket="genprint", Key=key)["Body"].read() == b"fingerprinted"

    stopped = stack("stop", "--dir", str(stack_dir))
    assert stopped.returncode == 0, stopped.stderr
    for svc in services.values():
        assert not alive(svc["pid"]), svc
        assert not listening(svc["port"]), svc
    assert stack("status", "--dir", str(stack_dir)).returncode == 1
    assert not (stack_dir / "stack.env").exists()

    # Restart: same credentials, the run and its artifact are still there.
    assert stack("start", "--dir", str(stack_dir)).returncode == 0
    env2 = read_env(stack_dir / "stack.env")
    assert env2["AWS_SECRET_ACCESS_KEY"] == env["AWS_SECRET_ACCESS_KEY"]
    code = (
        f"import mlflow; mlflow.set_tracking_uri({env2['MLFLOW_TRACKING_URI']!r}); "
        f"c = mlflow.MlflowClient(); print(c.get_run({run_id!r}).data.metrics['bit_accuracy']); "
        f"print(open(c.download_artifacts({run_id!r}, 'note.txt')).read())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0.97", "fingerprinted"]


@pytest.mark.slow
def test_sqlite_stack_starts_and_stops(stack_dir):
    started = stack("start", "--dir", str(stack_dir), "--backend", "sqlite")
    assert started.returncode == 0, started.stderr
    env = read_env(stack_dir / "stack.env")
    assert env["GENPRINT_REGISTRY_URL"].startswith("sqlite:///")
    report = json.loads(stack("status", "--dir", str(stack_dir)).stdout.strip().splitlines()[-1])
    assert report["running"] and set(report["services"]) == {"seaweedfs", "mlflow"}
    import urllib.request

    with urllib.request.urlopen(env["MLFLOW_TRACKING_URI"] + "/health", timeout=5) as response:
        assert response.status == 200
    assert stack("stop", "--dir", str(stack_dir)).returncode == 0
    for svc in report["services"].values():
        assert not alive(svc["pid"]) and not listening(svc["port"])


def test_stop_without_a_stack_is_harmless_and_status_says_so(tmp_path):
    assert stack("stop", "--dir", str(tmp_path / "none")).returncode == 0
    report = stack("status", "--dir", str(tmp_path / "none"))
    assert report.returncode == 1 and "no local stack" in report.stderr


def test_missing_postgres_binaries_fail_clearly_and_leave_nothing_running(tmp_path):
    d = tmp_path / "stack"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "start", "--dir", str(d), "--backend", "postgres"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GENPRINT_PG_BIN": str(tmp_path)},
    )
    assert done.returncode == 2 and "PostgreSQL binaries not found" in done.stderr
    assert not (d / "stack.json").exists() and not (d / "stack.env").exists()
