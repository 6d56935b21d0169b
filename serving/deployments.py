"""The Serve deployments around the engines: batching, threads, replica options. No HTTP here (see ingress.py)."""

from __future__ import annotations

import asyncio

from ray import serve

from serving.settings import ServeSettings


@serve.deployment(name="generation", max_ongoing_requests=64, health_check_period_s=5)
class Generation:
    """Requests of any mix of users are batched and decoded in one forward pass with per-sample modulation."""

    def __init__(self, settings: dict):
        from serving.generation import GenerationEngine

        self.settings = ServeSettings(**settings)
        self.engine = GenerationEngine(self.settings)
        self.generate.set_max_batch_size(self.settings.generation_batch_size)
        self.generate.set_batch_wait_timeout_s(self.settings.batch_wait_timeout_s)

    def info(self) -> dict:
        return self.engine.info()

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.02)
    async def generate(self, jobs: list) -> list:
        # torch releases the GIL: the replica's event loop keeps taking requests (and health checks) meanwhile
        return await asyncio.to_thread(self.engine.generate_each, jobs)


@serve.deployment(name="attribution", max_ongoing_requests=256, health_check_period_s=5)
class Attribution:
    """Images from many requests are read in one extractor call (grouped by size), then matched per caller's scope."""

    def __init__(self, settings: dict):
        from serving.attribution import AttributionEngine

        self.settings = ServeSettings(**settings)
        self.engine = AttributionEngine(self.settings)
        self.attribute.set_max_batch_size(self.settings.attribution_batch_size)
        self.attribute.set_batch_wait_timeout_s(self.settings.batch_wait_timeout_s)

    def info(self) -> dict:
        return self.engine.info()

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.02)
    async def attribute(self, items: list) -> list:
        return await asyncio.to_thread(self.engine.attribute, items)

    async def attribute_collection(self, images: list, scope) -> dict:
        """Not batched with other requests: a collection is one query already."""
        return await asyncio.to_thread(self.engine.attribute_collection, images, scope)
