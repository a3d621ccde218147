"""Schemas of the V2 statistics extension and the Prometheus metrics (for OpenAPI)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from layerserve.service.api.schemas import ResponseBody, with_examples


# ---- statistics extension -----------------------------------------------------------
class Duration(ResponseBody):
    count: int
    ns: int = Field(description="Total nanoseconds over ``count`` events.")


class InferenceStats(ResponseBody):
    success: Duration
    fail: Duration
    queue: Duration
    compute_input: Duration
    compute_infer: Duration
    compute_output: Duration
    cache_hit: Duration
    cache_miss: Duration


class BatchStats(ResponseBody):
    batch_size: int
    compute_input: Duration
    compute_infer: Duration
    compute_output: Duration


class ModelStat(ResponseBody):
    name: str
    version: str
    last_inference: int = Field(description="Milliseconds since the epoch; 0 if never.")
    inference_count: int
    execution_count: int
    inference_stats: InferenceStats
    response_stats: dict[str, Any]
    batch_stats: list[BatchStats]
    memory_usage: list[Any]


def _duration(count: int, ns: int) -> dict[str, int]:
    return {"count": count, "ns": ns}


class ModelStatistics(ResponseBody):
    """The statistics extension's answer, with Triton's field names."""

    model_config = with_examples(
        {
            "model_stats": [
                {
                    "name": "mlp",
                    "version": "2",
                    "last_inference": 1767225600000,
                    "inference_count": 1,
                    "execution_count": 1,
                    "inference_stats": {
                        "success": _duration(1, 647730),
                        "fail": _duration(0, 0),
                        "queue": _duration(1, 58847),
                        "compute_input": _duration(1, 5948),
                        "compute_infer": _duration(1, 259846),
                        "compute_output": _duration(1, 340),
                        "cache_hit": _duration(0, 0),
                        "cache_miss": _duration(0, 0),
                    },
                    "response_stats": {},
                    "batch_stats": [
                        {
                            "batch_size": 1,
                            "compute_input": _duration(1, 5948),
                            "compute_infer": _duration(1, 259846),
                            "compute_output": _duration(1, 340),
                        }
                    ],
                    "memory_usage": [],
                }
            ]
        }
    )
    model_stats: list[ModelStat]


METRICS_EXAMPLE = (
    "# HELP nv_inference_request_success Number of successful inference requests, "
    "all batch sizes\n"
    "# TYPE nv_inference_request_success counter\n"
    'nv_inference_request_success{model="mlp",version="2"} 1\n'
)
