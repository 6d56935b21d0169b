"""Artifact stores: a local directory or an S3 prefix behind one interface, every file checksummed.

Each stored file `KEY` gets a sidecar `KEY.sha256` (its hex digest); reads verify the bytes against it and
refuse a mismatch, so a corrupted or half-written safetensors file never reaches `load_bundle`. S3 endpoint
and credentials come from the standard AWS chain (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_PROFILE, ~/.aws/config ...), so the same code talks to AWS, SeaweedFS or MinIO.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from urllib.parse import urlparse

from genprint import settings
from genprint.errors import GenprintError

SIDECAR = ".sha256"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inside(root: Path, relative: str) -> Path:
    """root/relative, refusing a key that would land outside root (`..`, an absolute path): a store's keys come from
    whoever wrote the store."""
    root = Path(root).resolve()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise GenprintError(f"refusing the stored key {relative!r}: it points outside {root}")
    return path


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


class ArtifactStore(ABC):
    """Keys are '/'-separated paths relative to the store's root."""

    url: str

    # --- primitives each backend provides -------------------------------------------------------
    @abstractmethod
    def _upload(self, local: Path, key: str) -> None: ...

    @abstractmethod
    def _download(self, key: str, local: Path) -> None: ...

    @abstractmethod
    def _read_text(self, key: str) -> str | None:
        """The small text object at key, or None when it does not exist."""

    @abstractmethod
    def _write_text(self, key: str, text: str) -> None: ...

    @abstractmethod
    def _keys(self, prefix: str) -> list[str]: ...

    # --- the interface -------------------------------------------------------------------------
    def put_file(self, local: str | Path, key: str) -> str:
        """Upload one file and record its checksum; returns the sha256."""
        local = Path(local)
        if not local.is_file():
            raise GenprintError(f"{local} is not a file")
        checksum = sha256_file(local)
        self._upload(local, key)
        self._write_text(key + SIDECAR, checksum)  # after the data: a sidecar always describes complete bytes
        return checksum

    def get_file(self, key: str, local: str | Path) -> Path:
        """Download one file and verify it against its recorded checksum; the target is only replaced when it
        verifies."""
        local = Path(local)
        expected = self._read_text(key + SIDECAR)
        if expected is None:
            if not self.exists(key):
                raise GenprintError(f"{self._where(key)} does not exist")
            raise GenprintError(
                f"{self._where(key)} has no recorded checksum ({key}{SIDECAR}); upload it with genprint's store"
            )
        local.parent.mkdir(parents=True, exist_ok=True)
        if local.is_file() and sha256_file(local) == expected.strip():
            return local  # already here (cache hit)
        fd, tmp_name = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}.")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            self._download(key, tmp)
            actual = sha256_file(tmp)
            if actual != expected.strip():
                raise GenprintError(
                    f"{self._where(key)} is corrupted: sha256 {actual[:16]}... does not match the recorded "
                    f"{expected.strip()[:16]}...; re-upload it"
                )
            tmp.replace(local)
        finally:
            tmp.unlink(missing_ok=True)
        return local

    def put_dir(self, local_dir: str | Path, prefix: str = "") -> list[str]:
        """Upload every file under local_dir to prefix/...; returns the keys written."""
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise GenprintError(f"{local_dir} is not a directory")
        keys = []
        files = sorted(p for p in local_dir.rglob("*") if p.is_file() and not p.name.endswith(SIDECAR))
        # config.json last: a bundle whose upload stops midway has no config naming files that are not there
        for path in sorted(files, key=lambda p: p.name == "config.json"):
            key = _join(prefix, path.relative_to(local_dir).as_posix())
            self.put_file(path, key)
            keys.append(key)
        return keys

    def get_dir(self, prefix: str, local_dir: str | Path) -> Path:
        """Download every file under prefix into local_dir, each verified."""
        keys = self.list(prefix)
        if not keys:
            raise GenprintError(f"{self._where(prefix)} holds no files")
        local_dir = Path(local_dir)
        base = _join(prefix)
        for key in keys:
            rel = key[len(base) :].lstrip("/") if base else key
            self.get_file(key, _inside(local_dir, rel))
        return local_dir

    def list(self, prefix: str = "") -> list[str]:
        """Keys of stored files under prefix (checksum sidecars are not listed)."""
        return sorted(k for k in self._keys(_join(prefix)) if not k.endswith(SIDECAR))

    def exists(self, key: str) -> bool:
        """True for a stored file or a prefix holding files."""
        return bool(self._keys(_join(key)))

    def _where(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}" if key else self.url


class LocalStore(ArtifactStore):
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if path != self.root and self.root not in path.parents:
            raise GenprintError(f"key {key!r} escapes the store at {self.root}")
        return path

    def _upload(self, local: Path, key: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if local.resolve() == target:
            return
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        shutil.copyfile(local, tmp)
        tmp.replace(target)

    def _download(self, key: str, local: Path) -> None:
        try:
            shutil.copyfile(self._path(key), local)
        except FileNotFoundError:
            raise GenprintError(f"{self._where(key)} does not exist") from None

    def _read_text(self, key: str) -> str | None:
        path = self._path(key)
        return path.read_text() if path.is_file() else None

    def _write_text(self, key: str, text: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def _keys(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        return [
            p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")
        ]


class S3Store(ArtifactStore):
    def __init__(self, bucket: str, prefix: str = "", client=None):
        self.bucket, self.prefix = bucket, _join(prefix)
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client = client or s3_client()

    def _key(self, key: str) -> str:
        return _join(self.prefix, key)

    def _call(self, what: str, fn, *args, **kwargs):
        """Run one boto3 call, turning its failures into one-line GenprintErrors that say what to fix."""
        import botocore.exceptions as bex

        try:
            return fn(*args, **kwargs)
        except bex.NoCredentialsError:
            raise GenprintError(
                f"no AWS credentials for {what}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
            ) from None
        except (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ReadTimeoutError) as exc:
            raise GenprintError(f"cannot reach the S3 endpoint for {what}: {exc} (check AWS_ENDPOINT_URL_S3)") from None
        except bex.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchBucket",):
                raise GenprintError(f"bucket {self.bucket!r} does not exist ({what})") from None
            if code in (
                "SignatureDoesNotMatch",
                "InvalidAccessKeyId",
                "AccessDenied",
                "403",
                "InvalidToken",
                "ExpiredToken",
            ):
                raise GenprintError(
                    f"S3 refused the credentials for {what} ({code}): check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                    "or AWS_PROFILE"
                ) from None
            if code in ("NoSuchKey", "404", "NotFound"):
                if not self._bucket_exists():
                    raise GenprintError(f"bucket {self.bucket!r} does not exist ({what})") from None
                raise FileNotFoundError(what) from None
            raise GenprintError(
                f"S3 error for {what}: {code} {exc.response.get('Error', {}).get('Message', '')}"
            ) from None

    def _bucket_exists(self) -> bool:
        import botocore.exceptions as bex

        try:
            self.client.head_bucket(Bucket=self.bucket)
            return True
        except bex.ClientError:
            return False

    def _upload(self, local: Path, key: str) -> None:
        # put_object (not the transfer manager) so failures arrive as plain ClientErrors; one PUT holds up to 5 GB
        with open(local, "rb") as fh:
            self._call(self._where(key), self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=fh)

    def _download(self, key: str, local: Path) -> None:
        try:
            body = self._call(self._where(key), self.client.get_object, Bucket=self.bucket, Key=self._key(key))["Body"]
            with open(local, "wb") as fh:
                for chunk in body.iter_chunks(1 << 20):
                    fh.write(chunk)
        except FileNotFoundError:
            raise GenprintError(f"{self._where(key)} does not exist") from None

    def _read_text(self, key: str) -> str | None:
        try:
            body = self._call(self._where(key), self.client.get_object, Bucket=self.bucket, Key=self._key(key))["Body"]
        except FileNotFoundError:
            return None
        return body.read().decode()

    def _write_text(self, key: str, text: str) -> None:
        self._call(self._where(key), self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=text.encode())

    def _keys(self, prefix: str) -> list[str]:
        full = self._key(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        keys = []
        strip = len(self.prefix) + 1 if self.prefix else 0
        pages = self._call(self._where(prefix), lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=full)))
        for page in pages:
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key == full or not full or key.startswith(full + "/"):
                    keys.append(key[strip:])
        return keys


def s3_client():
    """A boto3 S3 client configured from the standard AWS chain (endpoint included)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", config=Config(retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": "path"})
    )


def open_store(url: str | Path) -> ArtifactStore:
    """`s3://bucket/prefix` -> S3Store; a path or `file://path` -> LocalStore."""
    text = str(url)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise GenprintError(f"{text!r} names no bucket: use s3://BUCKET/PREFIX")
        return S3Store(parsed.netloc, parsed.path)
    if parsed.scheme == "file":
        return LocalStore(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter is a Windows drive, anything else is unsupported
        raise GenprintError(f"unsupported store URL {text!r}: use a path, file://PATH or s3://BUCKET/PREFIX")
    return LocalStore(text)


def fetch_bundle(url_or_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A local directory holding the bundle at url_or_path: local paths are returned as they are, `s3://` bundles are
    downloaded (verified, unchanged files reused) into cache_dir."""
    text = str(url_or_path)
    if not text.startswith("s3://"):
        path = Path(urlparse(text).path if text.startswith("file://") else text)
        if not path.is_dir():
            raise GenprintError(f"no bundle directory at {path}")
        return path
    store = open_store(text)
    key = hashlib.sha256(text.rstrip("/").encode()).hexdigest()[:16]
    target = Path(cache_dir or settings.cache_dir() / "bundles") / key
    store.get_dir("", target)
    wanted = {target / k for k in store.list()}
    for stale in [p for p in target.rglob("*") if p.is_file() and p not in wanted]:
        stale.unlink()  # a file the remote bundle no longer has must not be loaded from the cache
    return target


def mirror_folder(url: str, cache_root: Path) -> Path:
    """A local copy of every object under s3://bucket/prefix, for folders genprint did not write (a diffusers
    pipeline): no checksums to verify, so a file is fetched once and a half-downloaded one never looks cached."""
    parsed = urlparse(url)
    bucket, prefix = parsed.netloc, parsed.path.strip("/")
    target = Path(cache_root) / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    client = s3_client()
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/" if prefix else "")
        keys = [obj["Key"] for page in pages for obj in page.get("Contents", [])]
    except Exception as exc:  # botocore raises many types: no bucket, bad credentials, no endpoint
        raise GenprintError(f"cannot list {url}: {str(exc).splitlines()[0]}") from None
    if not keys:
        raise GenprintError(f"{url} holds no files")
    for key in keys:
        local = _inside(target, key[len(prefix) :].lstrip("/"))
        if local.is_file():
            continue
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.part")
        client.download_file(bucket, key, str(tmp))
        tmp.replace(local)
    return target
