"""Run the whole Serve application on this machine: local Ray in a short temp dir, Serve on loopback, readiness wait,
and a clean shutdown. Used by `genprint serve`, `genprint demo`, the tests and the load benchmark."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request

from genprint.errors import GenprintError
from pipelines.ray_runtime import RayRuntime, free_port
from serving.settings import ServeSettings

log = logging.getLogger(__name__)
APP_NAME = "genprint"


def wait_ready(url: str, timeout: float) -> dict:
    """Poll GET {url}/readyz until it answers 200; returns its JSON."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=15) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read()[:300]!r}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise GenprintError(f"the Serve app at {url} was not ready after {timeout:.0f}s ({last})")


class LocalServe:
    """`with LocalServe(settings, port=0) as stack: ... stack.url ...` (port 0 picks a free port).

    Ray runs locally (pipelines.ray_runtime.RayRuntime: a fresh short temp dir, removed on exit). Replicas ask for no
    CPUs, so a laptop or a 2-core CI runner can place all of them."""

    def __init__(
        self,
        settings: ServeSettings,
        host: str = "127.0.0.1",
        port: int = 8000,
        metrics_port: int | None = None,
        ready_timeout: float = 300,
    ):
        self.settings, self.host = settings, host
        self.port = port or free_port()
        self.metrics_port = metrics_port
        self.ready_timeout = ready_timeout
        self.url = f"http://{host}:{self.port}"
        self.ray: RayRuntime | None = None
        self.ready: dict = {}

    def start(self) -> LocalServe:
        import ray
        from ray import serve

        from serving.apps import build

        if ray.is_initialized():
            raise GenprintError("Ray is already running in this process; stop it before starting the local stack")
        kwargs = {"_metrics_export_port": self.metrics_port} if self.metrics_port else {}
        self.ray = RayRuntime(log_to_driver=False, configure_logging=False, **kwargs)
        self.ray.start()
        try:
            serve.start(http_options={"host": self.host, "port": self.port})
            serve.run(build(self.settings, num_cpus=0), name=APP_NAME, route_prefix="/", blocking=False)
            self.ready = wait_ready(self.url, self.ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        import ray
        from ray import serve

        if self.ray is None:
            return
        try:
            if ray.is_initialized():
                serve.shutdown()
        finally:
            self.ray.stop()
            self.ray = None

    def __enter__(self) -> LocalServe:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
