#!/usr/bin/env python3
"""The services a developer runs beside the genprint CLI, on loopback: SeaweedFS S3, PostgreSQL, an MLflow server.

    python infra/local_stack.py start [--dir DIR] [--backend postgres|sqlite]
    set -a; . DIR/stack.env; set +a          # AWS_*, MLFLOW_TRACKING_URI, GENPRINT_REGISTRY_URL, ...
    python infra/local_stack.py status [--dir DIR]
    python infra/local_stack.py stop [--dir DIR] [--purge]

Everything lives under DIR (default $GENPRINT_STACK_DIR or ~/.local/share/genprint/stack): data, logs, generated
credentials (kept across restarts, so stored data stays readable) and `stack.json`, which records the processes this
script started; `stop` ends exactly those. The `sqlite` backend skips PostgreSQL (MLflow and the registry use SQLite
files). PostgreSQL refuses to run as root, so as root it runs as the `postgres` user (or `nobody`) with its data in a
directory of the temp dir that user can reach.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PG_BIN = Path(os.environ.get("GENPRINT_PG_BIN", "/usr/lib/postgresql/15/bin"))
BUCKET = "genprint"
REGION = "us-east-1"
STATE = "stack.json"
ENV_FILE = "stack.env"
WEED_PORTS = [
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
]


class StackError(RuntimeError):
    """A service could not be started or stopped; the message says which and why."""


def default_dir() -> Path:
    return Path(os.environ.get("GENPRINT_STACK_DIR") or Path.home() / ".local" / "share" / "genprint" / "stack")


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def wait_until(ready, what: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what} exited with status {proc.returncode}:\n{tail(log) if log else ''}")
        try:
            if ready():
                return
        except Exception:  # not up yet: connection refused, 503, ...
            pass
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {timeout:.0f}s:\n{tail(log) if log else ''}")
        time.sleep(0.3)


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


def executable(name: str) -> str:
    """The installed `name` beside this Python (the venv) or on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise StackError(f"`{name}` not found (install the dev extra: pip install -e '.[dev]')")
    return found


def weed_mini_command(weed: str, data_dir: Path, s3_config: Path, ports: dict[str, int]) -> list[str]:
    """`weed mini` (master, volume, filer and S3 in one process) on loopback with the `WEED_PORTS` given, data and its
    S3 unix socket in `data_dir`, and only S3 served. weed's default socket, /tmp/seaweedfs-s3-<port>.sock, outlives
    the server; a path too long for a unix socket (107 bytes) keeps it. The local stack and the tests start this."""
    sock = data_dir / "s3.sock"
    return [
        weed,
        "mini",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={data_dir}",
        f"-s3.config={s3_config}",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        *([f"-s3.localSocket={sock}"] if len(str(sock).encode()) <= 107 else []),
        *[f"-{name}={port}" for name, port in ports.items()],
    ]


def _spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a service in its own session, so `stop` can end it and every child it forks by one process group."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )


def _ours(pid: int, marker: str) -> bool:
    """The pid is still the process we started (not a reused id): its command line names our binary."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False


def _end_group(pid: int, marker: str, timeout: float = 15) -> None:
    if not _ours(pid, marker):
        return
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _ours(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _ours(pid, marker):
        os.killpg(pid, signal.SIGKILL)


# --- PostgreSQL ---------------------------------------------------------------------------------------------------
class Postgres:
    """A private cluster on 127.0.0.1 (TCP only, password auth) with the `registry` and `mlflow` databases."""

    user = "genprint"

    def __init__(self, stack_dir: Path):
        self.run_as = None
        root = stack_dir / "postgres"
        if os.geteuid() == 0:
            self.run_as = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
            if self.run_as is None:
                raise StackError("running as root and neither user `postgres` nor `nobody` exists to run PostgreSQL")
            digest = hashlib.sha1(str(stack_dir.resolve()).encode()).hexdigest()[:12]
            root = Path(tempfile.gettempdir()) / f"genprint-stack-pg-{digest}"
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"

    def _run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        extra = {"user": self.run_as} if self.run_as else {}
        done = subprocess.run(args, capture_output=True, text=True, cwd=self.root, **extra, **kw)
        if done.returncode != 0:
            raise StackError(
                f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
                f"\n{tail(self.log)}"
            )
        return done

    def start(self, port: int, password: str) -> None:
        for tool in ("initdb", "pg_ctl", "createdb"):
            if not (PG_BIN / tool).exists():
                raise StackError(
                    f"PostgreSQL binaries not found in {PG_BIN} (set GENPRINT_PG_BIN or use --backend sqlite)"
                )
        fresh = not (self.data / "PG_VERSION").exists()
        self.root.mkdir(mode=0o700, exist_ok=True)
        if self.run_as:
            shutil.chown(self.root, self.run_as, pwd.getpwnam(self.run_as).pw_gid)
        if fresh:
            pwfile = self.root / "pwfile"
            _write_private(pwfile, password + "\n")
            if self.run_as:
                shutil.chown(pwfile, self.run_as)
            try:
                self._run(
                    [
                        str(PG_BIN / "initdb"),
                        "-D",
                        str(self.data),
                        "-U",
                        self.user,
                        "--auth=scram-sha-256",
                        f"--pwfile={pwfile}",
                        "-E",
                        "UTF8",
                        "--locale=C",
                    ]
                )
            finally:
                pwfile.unlink(missing_ok=True)
        self._run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                "60",
                "-o",
                f"-h 127.0.0.1 -p {port} -k ''",
                "start",
            ]
        )
        if fresh:
            env = {**os.environ, "PGPASSWORD": password}
            for db in ("registry", "mlflow"):
                self._run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", self.user, db], env=env)

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        if self.pid() is not None and _ours(self.pid(), "postgres"):
            self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop"])


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# --- the stack ----------------------------------------------------------------------------------------------------
def _credentials(stack_dir: Path) -> dict[str, str]:
    path = stack_dir / "credentials.json"
    if path.exists():
        return json.loads(path.read_text())
    creds = {
        "s3_access_key": "genprint-" + secrets.token_hex(6),
        "s3_secret_key": secrets.token_urlsafe(24),
        "pg_password": secrets.token_urlsafe(18),
    }
    _write_private(path, json.dumps(creds, indent=2))
    return creds


def _load_state(stack_dir: Path) -> dict | None:
    path = stack_dir / STATE
    return json.loads(path.read_text()) if path.exists() else None


def _s3_client(endpoint: str, creds: dict[str, str]):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=creds["s3_access_key"],
        aws_secret_access_key=creds["s3_secret_key"],
    )


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


def start(stack_dir: Path, backend: str, say=print) -> dict:
    stack_dir.mkdir(parents=True, exist_ok=True)
    state = _load_state(stack_dir)
    if state and status(stack_dir)["running"]:
        raise StackError(f"the stack in {stack_dir} is already running (stop it first)")
    if state:  # left over from a crash: end whatever is still ours
        stop(stack_dir, say=lambda *_: None)
    creds = _credentials(stack_dir)
    logs = stack_dir / "logs"
    logs.mkdir(exist_ok=True)
    state = {"backend": backend, "pids": {}, "ports": {}, "dir": str(stack_dir.resolve())}
    try:
        if backend == "postgres":
            pg = Postgres(stack_dir)
            state["ports"]["postgres"] = port = free_ports(1)[0]
            state["pg_root"] = str(pg.root)
            say(f"PostgreSQL on 127.0.0.1:{port} (data {pg.data})")
            pg.start(port, creds["pg_password"])
            state["pids"]["postgres"] = pg.pid()
            db = f"postgresql+psycopg://{Postgres.user}:{creds['pg_password']}@127.0.0.1:{port}"
            registry_url, mlflow_store = f"{db}/registry", f"{db}/mlflow"
        else:
            registry_url = f"sqlite:///{(stack_dir / 'registry.db').resolve()}"
            mlflow_store = f"sqlite:///{(stack_dir / 'mlflow.db').resolve()}"

        ports = dict(zip(WEED_PORTS, free_ports(len(WEED_PORTS))))
        s3_config = stack_dir / "s3.json"
        _write_private(
            s3_config,
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "genprint",
                            "credentials": [{"accessKey": creds["s3_access_key"], "secretKey": creds["s3_secret_key"]}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            ),
        )
        (stack_dir / "seaweedfs").mkdir(exist_ok=True)
        endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        say(f"SeaweedFS S3 on {endpoint}")
        weed = _spawn(
            weed_mini_command(executable("weed"), stack_dir / "seaweedfs", s3_config, ports), logs / "seaweedfs.log"
        )
        state["pids"]["seaweedfs"], state["ports"]["s3"] = weed.pid, ports["s3.port"]
        _save(stack_dir, state)
        s3 = _s3_client(endpoint, creds)
        wait_until(lambda: s3.list_buckets() is not None, "SeaweedFS", 90, weed, logs / "seaweedfs.log")
        if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=BUCKET)

        s3_env = {
            "AWS_ENDPOINT_URL_S3": endpoint,
            "MLFLOW_S3_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": creds["s3_access_key"],
            "AWS_SECRET_ACCESS_KEY": creds["s3_secret_key"],
            "AWS_DEFAULT_REGION": REGION,
        }
        state["ports"]["mlflow"] = mlflow_port = free_ports(1)[0]
        tracking = f"http://127.0.0.1:{mlflow_port}"
        say(f"MLflow on {tracking} (artifacts s3://{BUCKET}/mlflow)")
        # Store URIs through the environment: the password stays out of the process list.
        mlflow = _spawn(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
                "--serve-artifacts",
            ],
            logs / "mlflow.log",
            env={
                **s3_env,
                "MLFLOW_BACKEND_STORE_URI": mlflow_store,
                "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{BUCKET}/mlflow",
            },
        )
        state["pids"]["mlflow"] = mlflow.pid
        _save(stack_dir, state)
        wait_until(lambda: _http_ok(f"{tracking}/health"), "MLflow", 180, mlflow, logs / "mlflow.log")

        env = {**s3_env, "MLFLOW_TRACKING_URI": tracking, "GENPRINT_REGISTRY_URL": registry_url}
        _write_private(stack_dir / ENV_FILE, "".join(f"{k}={v}\n" for k, v in env.items()))
        state["env_file"] = str((stack_dir / ENV_FILE).resolve())
        _save(stack_dir, state)
        return state
    except BaseException:
        stop(stack_dir, say=lambda *_: None)
        raise


def _save(stack_dir: Path, state: dict) -> None:
    (stack_dir / STATE).write_text(json.dumps(state, indent=2))


MARKERS = {"seaweedfs": "weed", "mlflow": "mlflow", "postgres": "postgres"}


def status(stack_dir: Path) -> dict:
    """Per service: is our process alive and is its port answering."""
    state = _load_state(stack_dir)
    if not state:
        return {"running": False, "services": {}}
    services = {}
    for name, pid in state["pids"].items():
        port = state["ports"].get("s3" if name == "seaweedfs" else name)
        alive = bool(pid) and _ours(pid, MARKERS[name])
        listening = False
        if alive and port:
            with socket.socket() as s:
                s.settimeout(1)
                listening = s.connect_ex(("127.0.0.1", port)) == 0
        services[name] = {"pid": pid, "port": port, "alive": alive, "listening": listening}
    expected = {"seaweedfs", "mlflow"} | ({"postgres"} if state["backend"] == "postgres" else set())
    running = set(services) == expected and all(s["alive"] and s["listening"] for s in services.values())
    return {"running": running, "services": services, "env_file": state.get("env_file")}


def stop(stack_dir: Path, purge: bool = False, say=print) -> None:
    state = _load_state(stack_dir)
    if state:
        for name in ("mlflow", "seaweedfs"):
            if pid := state["pids"].get(name):
                say(f"stopping {name} (pid {pid})")
                _end_group(pid, MARKERS[name])
        if state["backend"] == "postgres" and "pg_root" in state:
            say("stopping PostgreSQL")
            Postgres(stack_dir).stop()
        (stack_dir / STATE).unlink(missing_ok=True)
        (stack_dir / ENV_FILE).unlink(missing_ok=True)
    if purge:
        if state and state.get("pg_root"):
            shutil.rmtree(state["pg_root"], ignore_errors=True)
        elif stack_dir.exists():
            shutil.rmtree(Postgres(stack_dir).root, ignore_errors=True)
        shutil.rmtree(stack_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="local_stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--dir", type=Path, default=default_dir(), help="where data, logs and stack.env live")
    parser.add_argument(
        "--backend",
        choices=["postgres", "sqlite"],
        default="postgres",
        help="database behind MLflow and the registry (start only)",
    )
    parser.add_argument("--purge", action="store_true", help="stop: also delete all data and credentials")
    args = parser.parse_args(argv)
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)  # one line per message: logs and tests grep them
    try:
        if args.command == "start":
            with console.status("starting the local stack...") as spinner:
                state = start(args.dir, args.backend, say=lambda msg: spinner.update(msg) or console.log(msg))
            console.print(f"[green]local stack up[/green]; load it with:  set -a; . {state['env_file']}; set +a")
        elif args.command == "stop":
            stop(args.dir, purge=args.purge, say=console.log)
            console.print("local stack stopped" + (" and purged" if args.purge else ""))
        else:
            report = status(args.dir)
            for name, svc in report["services"].items():
                ok = svc["alive"] and svc["listening"]
                console.print(
                    f"{name:10} pid {svc['pid']:<8} port {svc['port']:<6} {'[green]up' if ok else '[red]down'}"
                )
            if not report["services"]:
                console.print(f"no local stack in {args.dir}")
            print(json.dumps(report))
            return 0 if report["running"] else 1
    except StackError as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
