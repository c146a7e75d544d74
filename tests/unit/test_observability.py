"""Metrics: a registry per app, the batcher's counters, and vLLM's families re-exported."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client.parser import text_string_to_metric_families

from rag_appliance.embedding.batcher import BatcherStats
from rag_appliance.observability import Metrics


def families(metrics: Metrics) -> set[str]:
    return {f.name for f in text_string_to_metric_families(metrics.exposition().decode())}


@pytest.fixture
def vllm_counter() -> Iterator[Counter]:
    """A vLLM-style family on the global registry, as vLLM's stat logger registers them."""
    counter = Counter("vllm:test_prompt_tokens", "Prompt tokens (test)", ["model_name"])
    counter.labels("m").inc(7)
    try:
        yield counter
    finally:
        REGISTRY.unregister(counter)


def test_vllm_families_of_the_global_registry_are_exported(vllm_counter: Counter) -> None:
    text = Metrics().exposition().decode()
    assert 'vllm:test_prompt_tokens_total{model_name="m"} 7.0' in text
    # Only vLLM's: the global registry's process and Python families stay out.
    assert "process_" not in text and "python_gc" not in text


def test_vllm_families_appear_once_registered_after_the_app_started() -> None:
    source = CollectorRegistry()
    metrics = Metrics(vllm_source=source)
    assert not any(name.startswith("vllm") for name in families(metrics))
    gauge = Gauge("vllm:num_requests_running", "Running requests", registry=source)
    gauge.set(3)
    Gauge("other_metric", "Not vLLM's", registry=source).set(1)
    text = metrics.exposition().decode()
    assert "vllm:num_requests_running 3.0" in text and "other_metric" not in text


def test_the_batcher_counters_are_read_at_scrape_time() -> None:
    stats = BatcherStats()
    metrics = Metrics(lambda: stats)
    stats.forward_passes, stats.queued_items = 5, 2
    value = metrics.registry.get_sample_value
    assert value("rag_embedding_forward_passes_total") == 5
    assert value("rag_embedding_queued_items") == 2
    stats.forward_passes = 6
    assert value("rag_embedding_forward_passes_total") == 6


def test_nothing_lands_on_the_global_registry() -> None:
    before = set(REGISTRY._names_to_collectors)
    metrics = Metrics(lambda: BatcherStats())
    metrics.observe_request("GET", "/health", 200, 0.01)
    metrics.observe_batch([0.1, 0.2], 2, 16, 0.05)
    assert set(REGISTRY._names_to_collectors) == before
    value = metrics.registry.get_sample_value
    assert value("rag_embedding_queue_wait_seconds_count") == 2
    assert value("rag_embedding_queue_wait_seconds_sum") == pytest.approx(0.3)
    assert value("rag_embedding_batch_tokens_sum") == 16
    labels = {"method": "GET", "route": "/health", "status": "200"}
    assert value("rag_http_requests_total", labels) == 1
