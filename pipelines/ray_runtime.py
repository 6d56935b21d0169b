"""Ray start-up and Ray's view of S3, shared by training, the bulk job and the local Serve stack.

with RayRuntime(address=None, cpus=2) as started: ...     # connect to `address`, or start Ray here and stop it after
filesystem = s3_filesystem()                              # pyarrow's S3 over the same AWS chain boto3 uses
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from genprint import settings
from genprint.errors import GenprintError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayRuntime:
    """Ray for one job. With `address` it connects to that cluster (KubeRay's `auto`); otherwise it starts a local Ray
    in a fresh short temp dir under settings.ray_temp_dir() (Ray's Unix socket paths must stay under ~107 bytes),
    which `stop` removes. `dashboard` serves the state API that Ray Train's controller needs. A Ray already running
    in this process is used as it is and left running."""

    def __init__(self, address: str | None = None, cpus: int | None = None, dashboard: bool = False, **init_options):
        self.address, self.cpus, self.dashboard, self.init_options = address, cpus, dashboard, init_options
        self.temp_dir: Path | None = None
        self.started = False

    def start(self) -> bool:
        """True when this call started Ray (and `stop` will shut it down)."""
        import ray

        if ray.is_initialized():
            return False
        # Ray Train patches print() into its logger *and* stdout: progress lines would show twice
        os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
        if self.address:
            ray.init(address=self.address, **self.init_options)
        else:
            root = settings.ray_temp_dir()
            root.mkdir(parents=True, exist_ok=True)
            self.temp_dir = Path(tempfile.mkdtemp(prefix="r", dir=root))
            options = {"include_dashboard": self.dashboard, **self.init_options}
            if self.dashboard:  # a free port: several local Ray instances may share this machine
                options.update(dashboard_host="127.0.0.1", dashboard_port=free_port())
            if self.cpus:
                options["num_cpus"] = max(self.cpus, os.cpu_count() or 1)
            ray.init(_temp_dir=str(self.temp_dir), **options)
        self.started = True
        return True

    def stop(self) -> None:
        import ray

        if self.started and ray.is_initialized():
            ray.shutdown()
        self.started = False
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None

    def __enter__(self) -> bool:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def s3_filesystem():
    """A pyarrow S3 filesystem from the AWS chain genprint.storage's boto3 client uses (endpoint included), so
    SeaweedFS and MinIO work as AWS does."""
    import boto3
    import pyarrow.fs as pafs

    from genprint.storage import s3_client

    session = boto3.session.Session()
    creds = session.get_credentials()
    if creds is None:
        raise GenprintError("no AWS credentials for s3://: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
    creds = creds.get_frozen_credentials()
    endpoint = urlparse(s3_client().meta.endpoint_url)
    return pafs.S3FileSystem(
        access_key=creds.access_key,
        secret_key=creds.secret_key,
        session_token=creds.token,
        region=session.region_name or "us-east-1",
        endpoint_override=endpoint.netloc,
        scheme=endpoint.scheme or "https",
        force_virtual_addressing=False,
    )


def location(url: str):
    """(path, filesystem) for pyarrow and Ray: `s3://bucket/prefix` -> ("bucket/prefix", S3 filesystem); a local path
    -> (its absolute path, None)."""
    if url.startswith("s3://"):
        return url[len("s3://") :].rstrip("/"), s3_filesystem()
    return str(Path(url).expanduser().resolve()), None
