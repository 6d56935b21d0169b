"""The HTTP face of genprint on Serve: FastAPI behind `@serve.ingress`, reaching the generation and attribution
deployments through handles. Every request carries a tenant API key (`X-API-Key` or `Authorization: Bearer`);
a tenant generates for and attributes to its own users only, a moderator key attributes across tenants.

(No `from __future__ import annotations` here: FastAPI must see the real annotation objects through Serve's wrapper.)"""

import asyncio
import base64
import logging
import random

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from ray import serve

from genprint.errors import GenprintError
from serving.intake import (
    IntakeError,
    PixelBudget,
    decode_image,
    fetch_s3,
    from_base64,
    image_from_request,
    pixels_of,
    read_body,
)
from serving.settings import ServeSettings

log = logging.getLogger(__name__)

app = FastAPI(
    title="genprint",
    summary="Per-user fingerprinted image generation and attribution",
    description="Every image generated here carries its user's fingerprint in the decoder's weights' modulation; "
    "attribution reads it back and names the user. Authenticate with `X-API-Key: <tenant key>`.",
    version="1",
)


class GenerateRequest(BaseModel):
    tenant: str = Field(description="the tenant the API key belongs to")
    user: str = Field(description="a user of that tenant, registered with a fingerprint for the served model")
    prompt: str
    seed: int | None = Field(None, ge=0, lt=2**63, description="default: random; image i uses seed + i")
    num_images: int = Field(1, ge=1)


class GeneratedImageOut(BaseModel):
    seed: int
    png_base64: str


class GenerateResponse(BaseModel):
    tenant: str
    user: str
    model_id: str
    fingerprint_id: str
    images: list[GeneratedImageOut]


class Attribution(BaseModel):
    attributed: bool
    tenant: str | None = None
    user: str | None = None
    fingerprint_id: str | None = None
    revoked: bool = False
    distance: int | None = None
    p_value: float | None = None
    runner_up_distance: int | None = None
    rule: str = "soft"
    images: int = 1
    nbits: int
    model_id: str


class BatchItem(BaseModel):
    id: str | None = None
    base64: str | None = None
    uri: str | None = Field(None, description="s3://BUCKET/KEY")


class BatchRequest(BaseModel):
    images: list[BatchItem]


class BatchResult(BaseModel):
    id: str | None
    result: Attribution | None = None
    error: str | None = None
    status: int = 200


class BatchResponse(BaseModel):
    results: list[BatchResult]


UNAVAILABLE = "the {what} service is restarting or overloaded; retry shortly"


def _api_key(x_api_key: str | None, authorization: str | None) -> str | None:
    if x_api_key:
        return x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def parse_json(model: type[BaseModel], body: bytes, shape: str):
    """The body as `model`, or 422 naming what is wrong (a field, or text that is not valid JSON or Unicode)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:3])
        raise IntakeError(422, f"the body must be JSON {shape}: {problems}") from None


def _is_unavailable(exc: BaseException) -> bool:
    """A replica died or is restarting: the caller should retry (503), nothing about the request was wrong."""
    import ray.exceptions as rex
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

    kinds = (
        rex.RayActorError,
        rex.ActorUnavailableError,
        rex.ObjectLostError,
        BackPressureError,
        DeploymentUnavailableError,
    )
    return isinstance(exc, kinds) or isinstance(getattr(exc, "cause", None), kinds)


# Registered before `@serve.ingress(app)` captures the app.
@app.exception_handler(GenprintError)
async def _genprint_error(request: Request, exc: GenprintError):
    """Bad input named by genprint itself, here or in a replica (Ray re-raises it as a subclass: read its cause)."""
    from genprint.registry import AuthenticationError, NotFoundError, RevokedError
    from serving.tenancy import ForbiddenError

    cause = getattr(exc, "cause", None) or exc
    status = (
        401
        if isinstance(cause, AuthenticationError)
        else 403
        if isinstance(cause, (ForbiddenError, RevokedError))
        else 404
        if isinstance(cause, NotFoundError)
        else 422
    )
    headers = {"WWW-Authenticate": "ApiKey"} if status == 401 else None
    return JSONResponse({"detail": str(cause)}, status_code=status, headers=headers)


@app.exception_handler(IntakeError)
async def _intake_error(request: Request, exc: IntakeError):
    headers = {"Retry-After": "1"} if exc.status == 503 else None
    return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)


@serve.deployment(name="ingress", max_ongoing_requests=256, health_check_period_s=5)
@serve.ingress(app)
class Ingress:
    def __init__(self, generation, attribution, settings: dict):
        from serving.metrics import IngressMetrics
        from serving.tenancy import Tenancy

        self.generation = generation
        self.attribution = attribution
        self.settings = ServeSettings(**settings)
        self.tenancy = Tenancy(self.settings.registry_url, self.settings.fpr, self.settings.moderator_tenants)
        self.metrics = IngressMetrics()
        self.pixels = PixelBudget(self.settings.max_inflight_pixels)
        self._model_info: dict | None = None

    async def _call(self, what: str, handle_call):
        try:
            return await handle_call
        except GenprintError:  # about this request (see _genprint_error)
            raise
        except Exception as exc:
            if _is_unavailable(exc):
                log.warning("%s unavailable: %s", what, exc)
                raise IntakeError(503, UNAVAILABLE.format(what=what)) from None
            raise

    async def _principal(self, x_api_key: str | None, authorization: str | None):
        return await asyncio.to_thread(self.tenancy.authenticate, _api_key(x_api_key, authorization))

    async def model_info(self) -> dict:
        if self._model_info is None:
            self._model_info = await self._call("generation", self.generation.info.remote())
        return self._model_info

    # --- health -----------------------------------------------------------------------------------------------------
    @app.get("/healthz", summary="Liveness: this ingress replica answers")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: the generation and attribution deployments answer")
    async def readyz(self):
        try:
            gen, att = await asyncio.wait_for(
                asyncio.gather(self.generation.info.remote(), self.attribution.info.remote()), 10
            )
        except Exception as exc:
            return JSONResponse({"status": "not ready", "detail": str(exc).splitlines()[0][:300]}, status_code=503)
        return {
            "status": "ready",
            "model_id": gen["model_id"],
            "nbits": gen["nbits"],
            "pipeline": gen["pipeline"],
            "attribution": {k: att[k] for k in ("model_id", "runtime", "registered")},
        }

    # --- generation -------------------------------------------------------------------------------------------------
    @app.post(
        "/v1/generate",
        response_model=GenerateResponse,
        summary="Generate fingerprinted images for one user",
        responses={200: {"content": {"image/png": {}}, "description": "JSON, or the PNG itself with ?format=png"}},
        openapi_extra={
            "requestBody": {"content": {"application/json": {"schema": GenerateRequest.model_json_schema()}}}
        },
    )
    async def generate(
        self,
        request: Request,
        format: str = Query("json", pattern="^(json|png)$"),
        x_api_key: str | None = Header(None),
        authorization: str | None = Header(None),
    ):
        from serving.generation import GenerationFailed, GenerationJob

        principal = await self._principal(x_api_key, authorization)
        s = self.settings
        raw = await read_body(request, s.max_request_bytes)  # bounded, like the attribution routes
        body = parse_json(GenerateRequest, raw, "{tenant, user, prompt, seed?, num_images?}")
        if body.num_images > s.max_images_per_request:
            raise IntakeError(422, f"num_images {body.num_images} exceeds the limit of {s.max_images_per_request}")
        if len(body.prompt) > s.max_prompt_chars:
            raise IntakeError(422, f"prompt of {len(body.prompt)} characters exceeds the limit of {s.max_prompt_chars}")
        if format == "png" and body.num_images != 1:
            raise IntakeError(422, "format=png returns one image: ask for num_images=1 or use the JSON format")
        info = await self.model_info()
        fingerprint_id, code = await asyncio.to_thread(
            self.tenancy.fingerprint, principal, body.tenant, body.user, info["model_id"]
        )
        seed = body.seed if body.seed is not None else random.randrange(2**62)
        jobs = [GenerationJob(body.prompt, seed + i, fingerprint_id, code) for i in range(body.num_images)]
        done = await asyncio.gather(*(self._call("generation", self.generation.generate.remote(job)) for job in jobs))
        if failed := next((d for d in done if isinstance(d, GenerationFailed)), None):
            raise IntakeError(422, failed.message)
        self.metrics.generated(principal.name, len(done))
        if format == "png":
            return Response(
                done[0].png,
                media_type="image/png",
                headers={
                    "X-Genprint-Seed": str(done[0].seed),
                    "X-Genprint-Model": done[0].model_id,
                    "X-Genprint-Fingerprint-Id": fingerprint_id,
                },
            )
        return GenerateResponse(
            tenant=body.tenant,
            user=body.user,
            model_id=info["model_id"],
            fingerprint_id=fingerprint_id,
            images=[GeneratedImageOut(seed=d.seed, png_base64=base64.b64encode(d.png).decode()) for d in done],
        )

    # --- attribution ------------------------------------------------------------------------------------------------
    async def _attribute(self, principal, image) -> Attribution:
        result = await self._call("attribution", self.attribution.attribute.remote((image, principal.scope)))
        self.metrics.attributed(principal.name, result["attributed"])
        return Attribution(**result)

    @app.post(
        "/v1/attribute",
        response_model=Attribution,
        summary="Attribute one image (raw bytes or multipart upload)",
        openapi_extra={
            "requestBody": {
                "content": {
                    t: {"schema": {"type": "string", "format": "binary"}}
                    for t in ("image/png", "image/jpeg", "image/webp", "multipart/form-data")
                },
                "required": True,
            }
        },
    )
    async def attribute(
        self, request: Request, x_api_key: str | None = Header(None), authorization: str | None = Header(None)
    ):
        principal = await self._principal(x_api_key, authorization)
        body = await read_body(request, self.settings.max_request_bytes)
        data, name = await image_from_request(request, body)
        pixels = pixels_of(data, self.settings.max_pixels, name)
        async with self.pixels.hold(pixels):
            image = await asyncio.to_thread(decode_image, data, self.settings.max_pixels, name)
            return await self._attribute(principal, image)

    @app.post(
        "/v1/attribute/batch",
        response_model=BatchResponse,
        summary="Attribute a batch of images given as base64 or s3:// URIs; each item gets a result or an error",
    )
    async def attribute_batch(
        self, request: Request, x_api_key: str | None = Header(None), authorization: str | None = Header(None)
    ):
        principal, items = await self._image_list(request, x_api_key, authorization, "a batch")
        # The request's images together hold at most max_request_pixels once decoded; later ones beyond it get 413.
        budget = self.settings.max_request_pixels
        for item in items:
            if isinstance(item, BatchResult):
                continue
            if item[2] > budget:
                item[3] = IntakeError(
                    413, f"{item[1]}: the request's images together exceed {self.settings.max_request_pixels} pixels"
                )
            else:
                budget -= item[2]
        async with self.pixels.hold(self.settings.max_request_pixels - budget):
            results = await asyncio.gather(*(self._batch_item(principal, item) for item in items))
        return BatchResponse(results=results)

    @app.post(
        "/v1/attribute/collection",
        response_model=Attribution,
        summary="Attribute images believed to come from one source jointly: one answer, one audited query",
    )
    async def attribute_collection(
        self, request: Request, x_api_key: str | None = Header(None), authorization: str | None = Header(None)
    ):
        principal, items = await self._image_list(request, x_api_key, authorization, "a collection")
        if failed := next((item for item in items if isinstance(item, BatchResult)), None):
            raise IntakeError(failed.status, failed.error)  # a collection is attributed whole or not at all
        pixels = sum(item[2] for item in items)
        if pixels > self.settings.max_request_pixels:
            raise IntakeError(413, f"the collection's images together exceed {self.settings.max_request_pixels} pixels")
        async with self.pixels.hold(pixels):
            images = await asyncio.gather(
                *(asyncio.to_thread(decode_image, data, self.settings.max_pixels, name) for _, name, _, data in items)
            )
            result = await self._call(
                "attribution", self.attribution.attribute_collection.remote(list(images), principal.scope)
            )
        self.metrics.attributed(principal.name, result["attributed"])
        return Attribution(**result)

    async def _image_list(self, request: Request, x_api_key, authorization, what: str) -> tuple:
        """(principal, items) of a request listing images (a batch or a collection): the caller, the body read and
        parsed within its bounds, 1 to max_batch_images images, each fetched or decoded from base64 (`_items`)."""
        principal = await self._principal(x_api_key, authorization)
        body = await read_body(request, self.settings.max_request_bytes)
        batch = parse_json(BatchRequest, body, '{"images": [{"base64": ...} | {"uri": "s3://..."}]}')
        if not batch.images or len(batch.images) > self.settings.max_batch_images:
            raise IntakeError(
                422, f"{what} holds 1 to {self.settings.max_batch_images} images, got {len(batch.images)}"
            )
        return principal, await self._items(principal, batch)

    async def _items(self, principal, batch: BatchRequest) -> list:
        """Each item's [id, name, pixels, bytes or IntakeError], or its BatchResult when it already failed. s3:// images
        are fetched one after another, all of a request's together at most max_request_bytes: a batch of URIs holds no
        more in memory than a body could."""
        remaining = self.settings.max_request_bytes
        items = []
        for index, item in enumerate(batch.images):
            name = item.id or f"images[{index}]"
            try:
                if (item.base64 is None) == (item.uri is None):
                    raise IntakeError(422, f"{name}: give exactly one of 'base64' and 'uri'")
                if item.base64 is not None:
                    data = from_base64(item.base64, name)
                else:
                    if remaining <= 0:
                        raise IntakeError(
                            413, f"{name}: the request's s3:// images exceed {self.settings.max_request_bytes} bytes"
                        )
                    s = self.settings
                    data = await asyncio.to_thread(
                        fetch_s3, item.uri, remaining, name, s.image_uri_prefixes, principal.name
                    )
                    remaining -= len(data)
                items.append([item.id, name, pixels_of(data, self.settings.max_pixels, name), data])
            except IntakeError as exc:
                items.append(BatchResult(id=item.id, error=str(exc), status=exc.status))
        return items

    async def _batch_item(self, principal, item) -> BatchResult:
        if isinstance(item, BatchResult):
            return item
        item_id, name, _, data = item
        try:
            if isinstance(data, IntakeError):
                raise data
            image = await asyncio.to_thread(decode_image, data, self.settings.max_pixels, name)
            return BatchResult(id=item_id, result=await self._attribute(principal, image))
        except IntakeError as exc:
            return BatchResult(id=item_id, error=str(exc), status=exc.status)

    @app.get(
        "/v1/users", summary="A page of the caller's users (a moderator may name any tenant); fingerprint ids, no bits"
    )
    async def users(
        self,
        tenant: str | None = None,
        limit: int = Query(100, ge=1, le=10_000),
        offset: int = Query(0, ge=0),
        x_api_key: str | None = Header(None),
        authorization: str | None = Header(None),
    ) -> list[dict]:
        principal = await self._principal(x_api_key, authorization)
        info = await self.model_info()
        return await asyncio.to_thread(self.tenancy.list_users, principal, info["model_id"], tenant, limit, offset)
