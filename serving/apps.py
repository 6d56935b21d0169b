"""The Serve application: `serving.apps:ingress_app`, an application builder.

    serve run serving.apps:ingress_app model=/path/to/bundle registry_url=sqlite:////data/registry.db
    serve deploy serving/serve_config.yaml        # args under the application's `args:`

Settings come from GENPRINT_* environment variables, overridden by the args (see serving.settings.ServeSettings).
One application holds all three deployments, composed with `.bind()`: the ingress reaches generation and attribution
through the handles it is given, so they need no route or application of their own.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from serving.deployments import Attribution, Generation
from serving.ingress import Ingress
from serving.settings import ServeSettings


def build(settings: ServeSettings, num_cpus: float | None = None) -> Application:
    """`num_cpus` overrides every replica's CPU request (0 packs a whole local stack onto a small machine)."""
    values = settings.model_dump()

    def opts(replicas: int) -> dict:
        return {"num_replicas": replicas} | (
            {"ray_actor_options": {"num_cpus": num_cpus}} if num_cpus is not None else {}
        )

    generation = Generation.options(**opts(settings.generation_replicas)).bind(values)
    attribution = Attribution.options(**opts(settings.attribution_replicas)).bind(values)
    return Ingress.options(**opts(settings.ingress_replicas)).bind(generation, attribution, values)


def ingress_app(args: dict[str, Any] | None = None) -> Application:
    """Application builder for `serve run` / `serve deploy` / KubeRay's serveConfigV2 (`import_path`)."""
    settings = ServeSettings.load(args)
    if not settings.model:  # neither GENPRINT_MODEL nor the `model` arg: the bundle shipped with genprint
        from genprint.bundle import default_bundle

        settings = settings.model_copy(update={"model": str(default_bundle())})
    return build(settings)
