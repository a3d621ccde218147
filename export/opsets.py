"""Which ONNX opsets layerserve writes, and the IR version each one needs."""

from __future__ import annotations

import functools

import onnx
from onnx import TensorProto, helper

from layerserve.errors import ConfigError, received

MIN_OPSET = 13
# The opset an export gets when none is asked for: the newest that onnxruntime 1.18, the
# lowest release pyproject.toml allows, runs (it implements ONNX 1.16: opset 21, IR
# version 10). A graph stamped with the newest opset the installed onnxruntime runs would
# not load on an older onnxruntime elsewhere. No converter picks a faster or more exact
# form above it (the highest is opset 20: Gelu, float16 IsInf), so the default graph has
# the same nodes as one at any newer opset; ``opset=`` still asks for a newer one.
DEFAULT_OPSET = 21


@functools.cache
def max_runtime_opset() -> int:
    """The newest default-domain opset the installed onnxruntime loads (probed once)."""
    import onnxruntime as ort

    for opset in range(onnx.defs.onnx_opset_version(), MIN_OPSET - 1, -1):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version_for(opset)
        )
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - any refusal means "not this opset"
            continue
        return opset
    return MIN_OPSET


def ir_version_for(opset: int) -> int:
    """The lowest IR version that can carry ``opset`` (runtimes accept old IR versions)."""
    for _, ir_version, ai_onnx, *_ in helper.VERSION_TABLE:
        if ai_onnx >= opset:
            return ir_version
    return onnx.IR_VERSION


def default_opset() -> int:
    """:data:`DEFAULT_OPSET`, or the newest the installed onnxruntime runs where that is
    older (a runtime below the supported range)."""
    return min(DEFAULT_OPSET, max_runtime_opset())


def resolve_opset(opset: int | None) -> int:
    """The opset an export writes: ``opset``, checked against the installed onnxruntime,
    or :func:`default_opset` for None."""
    newest = max_runtime_opset()
    if opset is None:
        return default_opset()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ConfigError(
            f"Expected an opset between {MIN_OPSET} and {newest} (the newest the installed "
            "onnxruntime runs). " + received("opset", opset)
        )
    return opset
