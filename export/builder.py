"""GraphBuilder: owns value names, initializers, nodes, the opset and the IR version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from layerserve.export.opsets import ir_version_for

BATCH_DIM = "batch"


@dataclass(frozen=True)
class Value:
    """A value in the graph being built: its name, static shape (None: unknown) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"

    @property
    def rank(self) -> int:
        return len(self.shape)


def onnx_type(dtype: Any) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


class GraphBuilder:
    """Accumulates one ONNX graph. ``subgraph()`` makes a body graph (for Scan) that
    shares the parent's name space, so inner names never shadow outer ones."""

    def __init__(
        self, opset: int, name: str = "layerserve", parent: GraphBuilder | None = None
    ) -> None:
        self.opset = opset
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._names: set[str] = parent._names if parent is not None else set()
        self._counts: dict[str, int] = parent._counts if parent is not None else {}
        # Layers whose output for one row depends on the other rows of the batch: the
        # exporter records them, and the service never merges requests for such a model.
        self.batch_coupled: list[str] = parent.batch_coupled if parent is not None else []

    def unique(self, base: str) -> str:
        base = base.replace("/", "_").replace(":", "_") or "v"
        if base not in self._names:
            self._names.add(base)
            return base
        count = self._counts.get(base, 0)
        while True:
            count += 1
            candidate = f"{base}_{count}"
            if candidate not in self._names:
                self._counts[base] = count
                self._names.add(candidate)
                return candidate

    def reserve(self, name: str) -> str:
        """Claim an exact name (a model input or output); it must be free."""
        if name in self._names:
            raise ValueError(f"The ONNX value name {name!r} is already used.")
        self._names.add(name)
        return name

    def constant(self, value: Any, name: str, dtype: Any = None) -> str:
        array = np.asarray(value, dtype=dtype) if dtype is not None else np.asarray(value)
        unique = self.unique(name)
        # order="C" keeps 0-d arrays 0-d (ascontiguousarray would make them (1,)).
        self.initializers.append(numpy_helper.from_array(np.asarray(array, order="C"), unique))
        return unique

    def int64s(self, values: Any, name: str) -> str:
        return self.constant(np.asarray(values, dtype=np.int64), name)

    def op(
        self,
        op_type: str,
        inputs: list[str],
        name: str,
        outputs: int = 1,
        output_names: list[str] | None = None,
        **attributes: Any,
    ) -> Any:
        """Add a node; returns its output name (or names when ``outputs > 1``)."""
        names = output_names or [
            self.unique(name if outputs == 1 else f"{name}_{i}") for i in range(outputs)
        ]
        node_name = self.unique(f"{name}/{op_type}")
        attributes = {k: v for k, v in attributes.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, inputs, names, name=node_name, **attributes))
        return names[0] if outputs == 1 and output_names is None else names

    def reshape_to(self, x: str, target: str, name: str) -> str:
        """``Reshape`` to a shape computed at run time, each of its sizes taken as given: a
        0 there (an empty batch or axis) stays 0 (``allowzero``, from opset 14), where a
        plain Reshape would copy the input's size at that index and give an empty tensor
        another shape. Opset 13 has no such attribute (there an empty tensor's reshaped
        shape may take the input's sizes)."""
        allowzero = 1 if self.opset >= 14 else None
        return self.op("Reshape", [x, target], name, allowzero=allowzero)

    def add_input(self, name: str, dtype: Any, shape: tuple[int | str | None, ...]) -> None:
        self._names.add(name)
        self.inputs.append(helper.make_tensor_value_info(name, onnx_type(dtype), list(shape)))

    def add_output(self, name: str, dtype: Any, shape: tuple[int | str | None, ...]) -> None:
        self._names.add(name)
        self.outputs.append(helper.make_tensor_value_info(name, onnx_type(dtype), list(shape)))

    def subgraph(self, name: str) -> GraphBuilder:
        return GraphBuilder(self.opset, self.unique(name), parent=self)

    def graph(self) -> onnx.GraphProto:
        return helper.make_graph(
            self.nodes, self.name, self.inputs, self.outputs, initializer=self.initializers
        )

    def model(self, metadata: dict[str, str] | None = None) -> onnx.ModelProto:
        model = helper.make_model(
            self.graph(),
            opset_imports=[helper.make_opsetid("", self.opset)],
            ir_version=ir_version_for(self.opset),
            producer_name="layerserve",
        )
        for key, value in (metadata or {}).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        return model


BOOL = TensorProto.BOOL
