"""genprint's own Prometheus metrics, exported by Ray's metrics agent beside Serve's built-in `ray_serve_*` series
(request counts, latencies, queue lengths, replica health per deployment)."""

from __future__ import annotations

from ray.serve.metrics import Counter


class IngressMetrics:
    def __init__(self):
        self._images = Counter(
            "genprint_generated_images", description="fingerprinted images generated", tag_keys=("tenant",)
        )
        self._attributions = Counter(
            "genprint_attributions", description="attribution answers", tag_keys=("tenant", "outcome")
        )

    def generated(self, tenant: str, count: int) -> None:
        self._images.inc(count, tags={"tenant": tenant})

    def attributed(self, tenant: str, attributed: bool) -> None:
        self._attributions.inc(tags={"tenant": tenant, "outcome": "attributed" if attributed else "not_attributed"})
