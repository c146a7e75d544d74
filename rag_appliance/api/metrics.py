"""GET /metrics: Prometheus exposition of the engine counters."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rag_appliance.services import Services

router = APIRouter()


class EngineCollector(Collector):
    """Reads the batcher's counters at scrape time (no bookkeeping on the hot path)."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterator[Metric]:
        stats = self._services.embedding.batcher.stats
        counters = {
            "requests": ("Embedding requests admitted", stats.requests),
            "items": ("Inputs encoded", stats.items),
            "forward_passes": ("Model forward passes", stats.forward_passes),
            "real_tokens": ("Tokens encoded, without padding", stats.real_tokens),
            "padded_tokens": ("Tokens encoded, with padding", stats.padded_tokens),
            "rejected_requests": ("Requests refused with 429", stats.rejected),
            "failed_batches": ("Forward passes that raised", stats.failed_batches),
        }
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(f"rag_embedding_{name}", doc, value=value)
        yield GaugeMetricFamily(
            "rag_embedding_queued_items", "Inputs waiting for the engine", value=stats.queued_items
        )


def make_registry(services: Services) -> CollectorRegistry:
    """A registry per app, so that several apps can live in one process."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(EngineCollector(services))
    return registry


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
