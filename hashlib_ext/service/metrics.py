"""Prometheus metrics: requests, latencies, lookups, matches, bank sizes, decoding.

Served as Prometheus text at ``GET /metrics``. Request metrics are labelled by route
*template* (``/v1/banks/{name}/hashes``), never by the raw path, so a client cannot grow
the label set; paths the service does not know count as ``other``. Bank sizes and journal
state are read when the metrics are scraped (a collector), not kept up to date per request.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BANK_ROUTE = re.compile(r"^/v1/banks/[^/]+(/[a-z]+)?$")
_FIXED = {"/v1/hash", "/v1/match", "/v1/banks", "/healthz", "/readyz", "/metrics",
          "/openapi.json", "/docs"}
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
                    5.0, 10.0, 30.0)


def route_of(path: str) -> str:
    """The route template of ``path`` (bounded set of label values)."""
    if path in _FIXED:
        return path
    m = _BANK_ROUTE.match(path)
    if m:
        return "/v1/banks/{name}" + (m.group(1) or "")
    return "other"


class Metrics:
    """The service's metrics in their own registry."""

    def __init__(self, state: Callable[[], Iterator[Any]]):
        disable_created_metrics()  # no *_created series beside every counter
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("hashlib_ext_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("hashlib_ext_request_duration_seconds",
                                 "Time to answer a request", ["route"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.lookups = Counter("hashlib_ext_lookups", "Hashes looked up in the banks",
                               ["algorithm"], registry=r)
        self.matches = Counter("hashlib_ext_matches", "Matches returned", ["bank"],
                               registry=r)
        self.added = Counter("hashlib_ext_hashes_added", "Hashes (or images) added",
                             ["bank"], registry=r)
        self.removed = Counter("hashlib_ext_hashes_removed", "Hashes removed", ["bank"],
                               registry=r)
        self.decode = Histogram("hashlib_ext_decode_duration_seconds",
                                "Time to decode and hash (or describe) an uploaded image",
                                ["job"], buckets=_LATENCY_BUCKETS, registry=r)
        self.decode_errors = Counter("hashlib_ext_decode_errors",
                                     "Uploaded images that could not be used", ["type"],
                                     registry=r)
        r.register(_StateCollector(state))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector:
    """Bank sizes, journals and decoder counts, read at scrape time from ``state()``,
    which yields ``("bank", stats dict)`` and ``("pool", pool)`` items."""

    def __init__(self, state: Callable[[], Iterator[Any]]):
        self.state = state

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        size = GaugeMetricFamily("hashlib_ext_bank_hashes", "Hashes (or images) in a bank",
                                 labels=["bank", "kind"])
        nbytes = GaugeMetricFamily("hashlib_ext_bank_bytes", "Memory held by a bank's index",
                                   labels=["bank"])
        jbytes = GaugeMetricFamily("hashlib_ext_journal_bytes",
                                   "Bytes in a bank's journal (not yet compacted)",
                                   labels=["bank"])
        jrecs = GaugeMetricFamily("hashlib_ext_journal_records",
                                  "Changes in a bank's journal (not yet compacted)",
                                  labels=["bank"])
        comp = CounterMetricFamily("hashlib_ext_compactions", "Journal compactions",
                                   labels=["bank"])
        pool_stats = CounterMetricFamily("hashlib_ext_decoders_replaced",
                                         "Decoding workers replaced (timeout or crash)")
        timeouts = CounterMetricFamily("hashlib_ext_decode_timeouts",
                                       "Images not decoded within their deadline")
        ready = GaugeMetricFamily("hashlib_ext_ready", "1 when the service takes requests")
        is_ready = 0.0
        for kind, item in self.state():
            if kind == "bank":
                name = item["name"]
                size.add_metric([name, item["kind"]], item["count"])
                nbytes.add_metric([name], item.get("nbytes", 0))
                jbytes.add_metric([name], item["journal_bytes"])
                jrecs.add_metric([name], item["journal_records"])
                comp.add_metric([name], item["compactions"])
            elif kind == "pool":
                pool_stats.add_metric([], item.replaced)
                timeouts.add_metric([], item.timeouts)
            elif kind == "ready":
                is_ready = 1.0 if item else 0.0
        ready.add_metric([], is_ready)
        yield from (size, nbytes, jbytes, jrecs, comp, pool_stats, timeouts, ready)


class RequestMetrics:
    """ASGI middleware counting every HTTP request by method, route and status, and
    timing it (from the request's arrival to the last byte of its answer)."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def watched(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            route = route_of(scope["path"])
            self.metrics.requests.labels(scope["method"], route, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
