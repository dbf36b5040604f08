"""Prometheus text exposition (format 0.0.4) without a client library: counters and histograms."""

from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKEN_BUCKETS = (32, 128, 512, 2048, 8192, 32768, 131072)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    items = list(labels) + ([extra] if extra else [])
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _fmt(v: float) -> str:
    if v == float("inf"):
        return "+Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1
        self.total += 1
        self.sum += value


class Metrics:
    """All the service's metrics. Thread-safe; ``render()`` gives the Prometheus text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._hists: dict[str, dict[Labels, _Histogram]] = defaultdict(dict)
        self._help: dict[str, tuple[str, str]] = {}
        self._gauges: dict[str, object] = {}
        self._declare("maxsim_requests_total", "counter", "HTTP requests by route, method and status code")
        self._declare("maxsim_request_duration_seconds", "histogram", "HTTP request latency by route")
        self._declare("maxsim_tokens_total", "counter", "tokens processed, by endpoint and input type")
        self._declare("maxsim_inputs_total", "counter", "texts encoded, by endpoint")
        self._declare("maxsim_batch_jobs", "histogram", "requests (jobs) encoded together in one model call")
        self._declare("maxsim_batch_inputs", "histogram", "texts encoded together in one model call")
        self._declare("maxsim_batch_tokens", "histogram", "tokens encoded together in one model call")
        self._declare("maxsim_batch_seconds", "histogram", "time of one batched model call")
        self._declare("maxsim_queue_wait_seconds", "histogram", "time a job waited for the model")
        self._declare(
            "maxsim_model_inputs_total",
            "counter",
            "texts sent to the model: kind=requested (by all requests), kind=encoded (after merging identical texts)",
        )
        self._declare(
            "maxsim_model_tokens_total",
            "counter",
            "token positions in the model's forward passes: kind=encoded (real tokens), kind=padded (real + padding)",
        )
        self._declare("maxsim_model_seconds_total", "counter", "time spent in model calls")
        self._declare(
            "maxsim_batch_waits_total",
            "counter",
            "model calls before which the worker waited for more requests (only when more were on their way)",
        )
        self._declare(
            "maxsim_pass_overhead_positions",
            "gauge",
            "what one forward pass costs besides its tokens, in token positions (learnt; plans the passes)",
        )
        self._declare("maxsim_rejected_total", "counter", "requests refused by auth, limits or rate limits, by code")
        self._declare("maxsim_queue_depth", "gauge", "jobs waiting for the model")

    def _declare(self, name: str, kind: str, help_text: str) -> None:
        self._help[name] = (kind, help_text)

    def set_gauge(self, name: str, fn) -> None:
        """A gauge read when rendering (e.g. the queue depth)."""
        self._gauges[name] = fn

    def inc(self, name: str, labels: dict[str, str] | None = None, value: float = 1.0) -> None:
        key = tuple(sorted((labels or {}).items()))
        with self._lock:
            self._counters[name][key] = self._counters[name].get(key, 0.0) + value

    def observe(
        self,
        name: str,
        value: float,
        labels: dict[str, str] | None = None,
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ) -> None:
        key = tuple(sorted((labels or {}).items()))
        with self._lock:
            hist = self._hists[name].get(key)
            if hist is None:
                hist = self._hists[name][key] = _Histogram(buckets)
            hist.observe(value)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.inc("maxsim_requests_total", {"route": route, "method": method, "status": str(status)})
        self.observe("maxsim_request_duration_seconds", seconds, {"route": route})

    def observe_batch(
        self,
        jobs: int,
        inputs: int,
        tokens: int,
        seconds: float,
        waits: list[float],
        unique_inputs: int | None = None,
        encoded_tokens: int | None = None,
        padded_tokens: int | None = None,
        waited: bool = False,
    ) -> None:
        self.inc("maxsim_model_inputs_total", {"kind": "requested"}, inputs)
        self.inc("maxsim_model_inputs_total", {"kind": "encoded"}, inputs if unique_inputs is None else unique_inputs)
        self.inc("maxsim_model_tokens_total", {"kind": "encoded"}, tokens if encoded_tokens is None else encoded_tokens)
        self.inc("maxsim_model_tokens_total", {"kind": "padded"}, tokens if padded_tokens is None else padded_tokens)
        self.inc("maxsim_model_seconds_total", None, seconds)
        self.inc("maxsim_batch_waits_total", None, 1.0 if waited else 0.0)
        self.observe("maxsim_batch_jobs", jobs, buckets=SIZE_BUCKETS)
        self.observe("maxsim_batch_inputs", inputs, buckets=SIZE_BUCKETS)
        self.observe("maxsim_batch_tokens", tokens, buckets=TOKEN_BUCKETS)
        self.observe("maxsim_batch_seconds", seconds)
        for w in waits:
            self.observe("maxsim_queue_wait_seconds", w)

    def count_tokens(self, endpoint: str, input_type: str, tokens: int, inputs: int) -> None:
        self.inc("maxsim_tokens_total", {"endpoint": endpoint, "input_type": input_type}, tokens)
        self.inc("maxsim_inputs_total", {"endpoint": endpoint}, inputs)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, (kind, help_text) in self._help.items():
                lines.append(f"# HELP {name} {help_text}")
                lines.append(f"# TYPE {name} {kind}")
                if kind == "counter":
                    for labels, v in sorted(self._counters.get(name, {}).items()):
                        lines.append(f"{name}{_fmt_labels(labels)} {_fmt(v)}")
                elif kind == "histogram":
                    for labels, h in sorted(self._hists.get(name, {}).items()):
                        for b, c in zip(h.buckets, h.counts, strict=True):
                            lines.append(f"{name}_bucket{_fmt_labels(labels, ('le', _fmt(b)))} {c}")
                        lines.append(f"{name}_bucket{_fmt_labels(labels, ('le', '+Inf'))} {h.total}")
                        lines.append(f"{name}_sum{_fmt_labels(labels)} {_fmt(h.sum)}")
                        lines.append(f"{name}_count{_fmt_labels(labels)} {h.total}")
                elif kind == "gauge" and name in self._gauges:
                    lines.append(f"{name} {_fmt(float(self._gauges[name]()))}")  # type: ignore[operator]
        return "\n".join(lines) + "\n"
