"""Graph clean-up after conversion: fold constants, drop Identity and dead nodes."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

# Ops never folded: their value depends on more than their inputs, or folding would
# replace a small node by a large initializer.
_NOT_FOLDED = {
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
    "Expand",
    "Tile",
    "ConstantOfShape",
}


def optimize(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    _fold_constants(graph, model.opset_import)
    _remove_identities(graph)
    _remove_dead_nodes(graph)
    _remove_unused_initializers(graph)
    return model


def _subgraph_references(node: onnx.NodeProto) -> set[str]:
    """Outer-scope names a node's subgraphs (Scan/Loop/If bodies) read."""
    names: set[str] = set()
    for attribute in node.attribute:
        graphs = (
            [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)
        )
        for graph in graphs:
            local = {i.name for i in graph.input} | {i.name for i in graph.initializer}
            for inner in graph.node:
                local.update(inner.output)
            for inner in graph.node:
                names.update(n for n in inner.input if n and n not in local)
                names.update(_subgraph_references(inner))
    return names


def _fold_constants(graph: onnx.GraphProto, opsets: list) -> None:
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    kept = []
    for node in graph.node:
        foldable = (
            node.op_type not in _NOT_FOLDED
            and node.domain in ("", "ai.onnx")
            and not any(
                a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                for a in node.attribute
            )
            and all(name in constants for name in node.input if name)
        )
        if not foldable or not node.input:
            kept.append(node)
            continue
        results = _evaluate(node, constants, opsets)
        for name, value in zip(node.output, results, strict=True):
            constants[name] = value
            graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    del graph.node[:]
    graph.node.extend(kept)


def _evaluate(
    node: onnx.NodeProto, constants: dict[str, np.ndarray], opsets: list
) -> list[np.ndarray]:
    inputs = [name for name in node.input if name]
    graph = helper.make_graph(
        [node],
        "fold",
        [
            helper.make_tensor_value_info(
                n, helper.np_dtype_to_tensor_dtype(constants[n].dtype), constants[n].shape
            )
            for n in inputs
        ],
        [helper.make_empty_tensor_value_info(n) for n in node.output],
    )
    model = helper.make_model(graph, opset_imports=opsets)
    return ReferenceEvaluator(model).run(None, {n: constants[n] for n in inputs})


def _remove_identities(graph: onnx.GraphProto) -> None:
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    kept = []
    for node in graph.node:
        if node.op_type == "Identity" and node.output[0] not in outputs:
            rename[node.output[0]] = rename.get(node.input[0], node.input[0])
            continue
        kept.append(node)
    for node in kept:
        for index, name in enumerate(node.input):
            if name in rename:
                node.input[index] = rename[name]
        _rename_in_subgraphs(node, rename)
    del graph.node[:]
    graph.node.extend(kept)


def _rename_in_subgraphs(node: onnx.NodeProto, rename: dict[str, str]) -> None:
    for attribute in node.attribute:
        graphs = (
            [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)
        )
        for graph in graphs:
            for inner in graph.node:
                for index, name in enumerate(inner.input):
                    if name in rename:
                        inner.input[index] = rename[name]
                _rename_in_subgraphs(inner, rename)


def _remove_dead_nodes(graph: onnx.GraphProto) -> None:
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(n for n in node.input if n)
            needed.update(_subgraph_references(node))
    del graph.node[:]
    graph.node.extend(reversed(kept))


def _remove_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {o.name for o in graph.output}
    for node in graph.node:
        used.update(n for n in node.input if n)
        used.update(_subgraph_references(node))
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
