"""Checks shared by the export tests: graph quality and parity with the reference."""

from __future__ import annotations

import numpy as np
import onnx

from layerserve.export import max_runtime_opset
from layerserve.export.api import exported_mask, output_names
from layerserve.export.parity import sample_inputs, session

OPSETS = (13, max_runtime_opset())
BATCH_SIZES = (0, 1, 7, 64)


def inferred_output_shapes(onnx_model: onnx.ModelProto) -> dict[str, list]:
    inferred = onnx.shape_inference.infer_shapes(onnx_model, strict_mode=True)
    return {
        o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
        for o in inferred.graph.output
    }


def assert_matches_reference(model, onnx_model, batch_sizes=BATCH_SIZES, seed=0, atol=1e-5):
    runner = session(onnx_model)
    graph_outputs = [o.name for o in onnx_model.graph.output]
    names = output_names(model)
    for batch in batch_sizes:
        arrays = sample_inputs(model, batch, seed + batch)
        feeds = {i.name: a for i, a in zip(runner.get_inputs(), arrays, strict=True)}
        got = dict(zip(graph_outputs, runner.run(None, feeds), strict=True))
        outputs, masks = model.run(arrays if len(arrays) > 1 else arrays[0])
        outputs = outputs if len(model.outputs) > 1 else [outputs]
        masks = masks if len(model.outputs) > 1 else [masks]
        for name, expected, mask in zip(names, outputs, masks, strict=True):
            assert got[name].dtype == np.asarray(expected).dtype, name
            np.testing.assert_allclose(
                got[name], expected, rtol=1e-5, atol=atol, err_msg=f"{name} at batch {batch}"
            )
            if mask is None:
                assert f"{name}_mask" not in got
            else:
                want = exported_mask(mask, len(np.asarray(expected)))
                np.testing.assert_array_equal(got[f"{name}_mask"], want)


def assert_graph_quality(onnx_model: onnx.ModelProto) -> None:
    onnx.checker.check_model(onnx_model, full_check=True)
    graph = onnx_model.graph
    ops = [n.op_type for n in graph.node]
    assert "Identity" not in ops and "Dropout" not in ops, ops
    initializers = {i.name for i in graph.initializer}
    consumed = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
    for node in graph.node:
        assert any(o in consumed for o in node.output), f"dead node {node.name}"
        has_subgraph = any(a.type == onnx.AttributeProto.GRAPH for a in node.attribute)
        if node.input and not has_subgraph:
            assert not all(i in initializers for i in node.input if i), (
                f"{node.name} reads only constants: it should have been folded"
            )


__all__ = [
    "OPSETS",
    "assert_graph_quality",
    "assert_matches_reference",
    "inferred_output_shapes",
]
