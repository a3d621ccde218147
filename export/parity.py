"""Running an exported graph in onnxruntime beside the NumPy reference."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from layerserve.errors import ExportError, LayerCallError, ShapeError
from layerserve.export.api import MASK_SUFFIX, exported_mask, output_names


@dataclass
class ParityReport:
    """Largest absolute difference over all outputs and batch sizes, and mask equality."""

    max_abs_error: float = 0.0
    masks_equal: bool = True
    batch_sizes: list[int] = field(default_factory=list)
    # Largest finite |reference output| at batch size 1 (0 when 1 is not compared).
    output_scale: float = 0.0

    def ok(self, atol: float = 1e-5) -> bool:
        return self.masks_equal and self.max_abs_error <= atol


def session(onnx_model: onnx.ModelProto, providers: list[str] | None = None) -> Any:
    import onnxruntime as ort

    try:
        return ort.InferenceSession(
            onnx_model.SerializeToString(), providers=providers or ["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime's own types: NotImplemented, Fail, InvalidGraph
        raise ExportError(
            f"onnxruntime {ort.__version__} cannot load the exported graph: {exc}"[:2000]
        ) from exc


# Sizes tried for unknown (None) dimensions: the first the model runs on is used, as a
# valid convolution or pooling over a variable length needs a minimum length.
UNKNOWN_SIZES = (4, 8, 16, 32, 64)


def unknown_size(model: Any) -> int:
    """The size sample inputs give unknown dimensions: the first of ``UNKNOWN_SIZES`` on
    which the NumPy reference runs."""
    if all(d is not None for tensor in model.inputs for d in tensor.shape[1:]):
        return UNKNOWN_SIZES[0]
    for size in UNKNOWN_SIZES:
        arrays = sample_inputs(model, 1, size=size)
        try:
            with np.errstate(all="ignore"):
                model.run(arrays if len(arrays) > 1 else arrays[0])
        except (ShapeError, LayerCallError):
            continue
        return size
    return UNKNOWN_SIZES[0]


def sample_inputs(
    model: Any, batch: int, seed: int = 0, size: int | None = None
) -> list[np.ndarray]:
    """Random inputs of the model's shapes (unknown sizes: ``size``, default
    :func:`unknown_size`). In sequences, some timesteps (anywhere, not only at the end)
    are all zeros, so that Masking layers mask them."""
    size = unknown_size(model) if size is None else size
    rng = np.random.default_rng(seed)
    arrays = []
    for tensor in model.inputs:
        shape = (batch, *(size if d is None else d for d in tensor.shape[1:]))
        dtype = np.dtype(tensor.dtype)
        index_range = model.reader_range(tensor, "input_value_range")
        if index_range is not None:
            array = rng.integers(*index_range, shape).astype(dtype)
        elif dtype.kind in "iub":
            array = rng.integers(0, 2 if dtype.kind == "b" else 10, shape).astype(dtype)
        else:
            array = rng.standard_normal(shape).astype(dtype)
            if array.ndim >= 3 and batch:
                hidden = rng.random(shape[:2]) < 0.3
                array[hidden] = 0
        arrays.append(array)
    return arrays


def compare(
    model: Any, onnx_model: onnx.ModelProto, batch_sizes: tuple[int, ...] = (1, 7), seed: int = 0
) -> ParityReport:
    runner = session(onnx_model)
    names = output_names(model)
    size = unknown_size(model)
    graph_outputs = [o.name for o in onnx_model.graph.output]
    report = ParityReport(batch_sizes=list(batch_sizes))
    for batch in batch_sizes:
        arrays = sample_inputs(model, batch, seed + batch, size)
        feeds = {layer.name: a for layer, a in zip(model.input_layers, arrays, strict=True)}
        got = dict(zip(graph_outputs, runner.run(None, feeds), strict=True))
        outputs, masks = model.run(arrays if len(arrays) > 1 else arrays[0])
        outputs = outputs if isinstance(outputs, list) else [outputs]
        masks = masks if isinstance(masks, list) else [masks]
        if batch == 1:
            report.output_scale = _largest_finite(outputs)
        for name, expected, mask in zip(names, outputs, masks, strict=True):
            actual = got[name]
            if actual.shape != np.shape(expected):
                report.max_abs_error = float("inf")
                continue
            if actual.size:
                a = actual.astype(np.float64)
                e = np.asarray(expected, np.float64)
                # Equal values (infinities included) and NaN against NaN agree; NaN against
                # a number is an infinite error, not one that nanmax would skip.
                same = (a == e) | (np.isnan(a) & np.isnan(e))
                diff = np.nan_to_num(np.where(same, 0.0, np.abs(a - e)), nan=np.inf)
                report.max_abs_error = max(report.max_abs_error, float(diff.max()))
            if mask is not None:
                got_mask = got.get(name + MASK_SUFFIX)
                want = exported_mask(mask, len(actual))
                if got_mask is None or not np.array_equal(got_mask, want):
                    report.masks_equal = False
    return report


def _largest_finite(outputs: list[Any]) -> float:
    scale = 0.0
    for output in outputs:
        values = np.abs(np.asarray(output, np.float64))
        scale = max(scale, float(values[np.isfinite(values)].max(initial=0.0)))
    return scale
