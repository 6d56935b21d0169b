"""genprint on Ray Serve: per-user fingerprinted generation, batched attribution, and the HTTP ingress.

The engines (`generation.GenerationEngine`, `attribution.AttributionEngine`) are plain Python so benchmarks and tests
can drive them directly; `deployments` wraps them for Serve and `apps:ingress_app` composes the application.
"""
