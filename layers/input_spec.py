"""Declarative input constraints, checked by the base layer before every call."""

from __future__ import annotations

from dataclasses import dataclass, field

from layerserve.errors import ShapeError
from layerserve.layers.tensor import Shape


@dataclass
class InputSpec:
    """Rank and axis-size constraints on one input (``axes`` maps axis -> size)."""

    ndim: int | None = None
    min_ndim: int | None = None
    max_ndim: int | None = None
    axes: dict[int, int] = field(default_factory=dict)


def check_input_specs(layer_name: str, specs: list[InputSpec] | None, shapes: list[Shape]) -> None:
    """Raise ShapeError naming the layer, the rule and the shape received."""
    if not specs:
        return
    if len(specs) != len(shapes):
        raise ShapeError(
            f"Layer {layer_name} expects {len(specs)} input(s), "
            f"but it received {len(shapes)} input tensors."
        )
    for index, (spec, shape) in enumerate(zip(specs, shapes, strict=True)):
        _check_one(layer_name, index, spec, tuple(shape))


def _check_one(layer_name: str, index: int, spec: InputSpec, shape: Shape) -> None:
    prefix = f"Input {index} is incompatible with layer {layer_name}:"
    rank = len(shape)
    if spec.ndim is not None and rank != spec.ndim:
        raise ShapeError(
            f"{prefix} expected ndim={spec.ndim}, found ndim={rank}. "
            f"Full shape received: {_fmt(shape)}"
        )
    if spec.min_ndim is not None and rank < spec.min_ndim:
        raise ShapeError(
            f"{prefix} expected min_ndim={spec.min_ndim}, found ndim={rank}. "
            f"Full shape received: {_fmt(shape)}"
        )
    if spec.max_ndim is not None and rank > spec.max_ndim:
        raise ShapeError(
            f"{prefix} expected max_ndim={spec.max_ndim}, found ndim={rank}. "
            f"Full shape received: {_fmt(shape)}"
        )
    for axis, size in spec.axes.items():
        actual = shape[axis] if -rank <= axis < rank else None
        if actual is not None and actual != size:
            raise ShapeError(
                f"{prefix} expected axis {axis} of input shape to have value {size}, "
                f"but received input with shape {_fmt(shape)}"
            )


def _fmt(shape: Shape) -> str:
    return (
        "("
        + ", ".join("None" if d is None else str(d) for d in shape)
        + (",)" if len(shape) == 1 else ")")
    )
