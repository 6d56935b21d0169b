"""HTTP request intake: bounded body reads, image content types, multipart, base64 and s3:// images.

Everything here raises `IntakeError(status, message)`; the ingress turns it into that HTTP status with the message
as `detail`. Image decoding itself is genprint.imageio's (pixel limit, bombs, RGB conversion)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from urllib.parse import urlparse

import numpy as np

from genprint.errors import GenprintError

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "application/octet-stream")


class IntakeError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def read_body(request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise IntakeError(413, f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise IntakeError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def media_type(request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def image_from_request(request, body: bytes) -> tuple[bytes, str]:
    """(image bytes, name) from a raw image body or a multipart form with one file field."""
    kind = media_type(request)
    if kind in IMAGE_TYPES:
        return body, "body"
    if kind == "multipart/form-data":
        from starlette.requests import Request

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=1, max_fields=8, max_part_size=len(body) + 1)
        except Exception as exc:  # starlette raises MultiPartException / HTTPException for malformed forms
            raise IntakeError(400, f"malformed multipart form: {exc}") from None
        files = [v for v in form.values() if hasattr(v, "read")]
        if len(files) != 1:
            raise IntakeError(422, f"the multipart form must hold exactly one file field (found {len(files)})")
        return await files[0].read(), files[0].filename or "upload"
    raise IntakeError(
        415,
        f"unsupported content type {kind or '(none)'!r}: send the image as image/png, image/jpeg, image/webp "
        "or application/octet-stream, or as multipart/form-data with one file",
    )


def decode_image(data: bytes, max_pixels: int, name: str) -> np.ndarray:
    """Image bytes -> float32 (3, H, W) in [0, 1]; 422 with imageio's message when the bytes are not a usable image."""
    from genprint.imageio import decode_image_bytes

    try:
        return decode_image_bytes(data, max_pixels=max_pixels, name=name).numpy()
    except GenprintError as exc:
        raise IntakeError(422, str(exc)) from None


def pixels_of(data: bytes, max_pixels: int, name: str) -> int:
    """The pixels `data` decodes to, read from its header: 422 when it is no image or larger than max_pixels."""
    from genprint.imageio import peek_size

    try:
        width, height = peek_size(data, name)
    except GenprintError as exc:
        raise IntakeError(422, str(exc)) from None
    if width * height > max_pixels:
        raise IntakeError(
            422, f"{name}: {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} pixels"
        )
    return width * height


def from_base64(text: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise IntakeError(422, f"{name}: 'base64' is not valid base64") from None


def uri_allowed(uri: str, prefixes: list[str], tenant: str) -> bool:
    """Whether `uri` lies under one of the configured prefixes ('{tenant}' in a prefix is the caller's tenant)."""
    return any(uri.startswith(p.replace("{tenant}", tenant)) for p in prefixes) and "/../" not in uri + "/"


def fetch_s3(uri: str, limit: int, name: str, prefixes: list[str], tenant: str) -> bytes:
    """One object from S3 (credentials and endpoint from the standard AWS chain), refused past `limit` bytes.
    Only URIs under the tenant's configured prefixes are read, and a failure says nothing about why (whether the key
    exists is not for the caller to learn)."""
    from genprint.storage import s3_client

    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise IntakeError(422, f"{name}: {uri!r} is not an s3://BUCKET/KEY URI")
    if not uri_allowed(uri, prefixes, tenant):
        raise IntakeError(403, f"{name}: this deployment reads s3:// images only under its configured prefixes")
    client = s3_client()
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        if head["ContentLength"] > limit:
            raise IntakeError(413, f"{name}: {uri} is {head['ContentLength']} bytes, over the limit of {limit} bytes")
        return client.get_object(Bucket=bucket, Key=key)["Body"].read(limit + 1)[:limit]
    except IntakeError:
        raise
    except Exception:  # botocore: no such key/bucket, access denied, endpoint down; all alike to the caller
        raise IntakeError(422, f"{name}: cannot read {uri}") from None


class PixelBudget:
    """Decoded pixels one ingress replica holds at once. A request takes its images' pixels (counted from their
    headers) before decoding them and gives them back when answered; while the budget is spent, later requests wait.
    One request may never take more than the whole budget."""

    def __init__(self, total: int):
        self.total, self.used = total, 0
        self._freed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, pixels: int):
        pixels = min(pixels, self.total)
        async with self._freed:
            await self._freed.wait_for(lambda: self.used + pixels <= self.total)
            self.used += pixels
        try:
            yield
        finally:
            async with self._freed:
                self.used -= pixels
                self._freed.notify_all()
