"""Reading the Prometheus exposition of ``/metrics`` in tests: every sample by name and
labels, exactly as written (names untouched, so Triton's counters keep their names)."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """``{(name, frozenset(labels)): value}`` of every sample; the text must also parse
    with prometheus_client's own parser."""
    assert list(text_string_to_metric_families(text))
    samples: Samples = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        match = SAMPLE.match(line)
        assert match, line
        name, labels, number = match.groups()
        samples[(name, frozenset(LABEL.findall(labels or "")))] = float(number)
    return samples


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


def value(samples: Samples, name: str, **pairs: str) -> float:
    """One sample: ``value(s, "nv_inference_count", model="mlp", version="1")``."""
    return samples[(name, labels(**pairs))]


def model_totals(samples: Samples, name: str) -> dict[tuple[str, str], float]:
    """A per-model metric's samples by (model, version), other labels summed over."""
    out: dict[tuple[str, str], float] = {}
    for (metric, pairs), number in samples.items():
        if metric == name:
            found = dict(pairs)
            key = (found["model"], found["version"])
            out[key] = out.get(key, 0) + number
    return out
