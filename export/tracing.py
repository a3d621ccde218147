"""Tracing NumPy code into ONNX nodes (Lambda functions, custom activations).

A :class:`TracedArray` stands in for a NumPy array: NumPy hands every ufunc
(``__array_ufunc__``), every public function (``__array_function__``) and every operator
applied to it back to the tracer, which records the matching ONNX nodes on a
:class:`GraphBuilder` and returns another ``TracedArray`` with the static shape and the
dtype NumPy itself would give. Anything outside the dispatch tables fails with a
:class:`NotSupportedError` naming the operation.

Shapes are static tuples where ``None`` is a size only known at run time (the batch).
"""

from __future__ import annotations

import inspect
import math
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin
from onnx import numpy_helper

from layerserve.errors import NotSupportedError
from layerserve.export.builder import GraphBuilder, Value, onnx_type
from layerserve.export.opsets import MIN_OPSET

Shape = tuple[int | None, ...]

_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min
_UNSET: Any = object()
_HOW_TO = (
    "Write the function with the supported NumPy ufuncs and functions or with "
    "layerserve.backend (K) functions (see layerserve.export.tracing.supported())."
)


class TracedArray(NDArrayOperatorsMixin):
    """An ONNX value standing in for a NumPy array while a function is traced."""

    __slots__ = ("builder", "name", "prefix", "_shape", "_dtype", "_buffer", "_version")

    def __init__(
        self,
        builder: GraphBuilder,
        name: str,
        shape: Sequence[int | None],
        dtype: Any,
        prefix: str = "traced",
    ) -> None:
        self.builder = builder
        self.name = name
        self.prefix = prefix
        self._shape: Shape = tuple(None if d is None else int(d) for d in shape)
        self._dtype = np.dtype(dtype)
        self._buffer = _Buffer()
        self._version = 0

    # NumPy's protocols.

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if _has_out(kwargs.get("out")):
            raise _unsupported(
                self,
                f"np.{ufunc.__name__}(..., out=...)",
                "results cannot be written into an existing array",
            )
        kwargs.pop("out", None)
        if method == "__call__":
            return _call_ufunc(self, ufunc, inputs, kwargs)
        table = {"reduce": _UFUNC_REDUCE, "accumulate": _UFUNC_ACCUMULATE}.get(method, {})
        if ufunc not in table:
            raise _unsupported(
                self,
                f"np.{ufunc.__name__}.{method}",
                "this ufunc method has no ONNX equivalent here",
            )
        (array,) = inputs
        return table[ufunc](array, axis=kwargs.pop("axis", 0), **kwargs)

    def __array_function__(self, func: Callable, types: Any, args: Any, kwargs: Any) -> Any:
        label = _function_label(func)
        handler = _FUNCTIONS.get(func)
        if handler is None:
            raise _unsupported(self, label, "it is not in the tracer's table of NumPy functions")
        if _out_given(func, args, kwargs):
            raise _unsupported(
                self, f"{label}(..., out=...)", "results cannot be written into an existing array"
            )
        kwargs = {k: v for k, v in kwargs.items() if k != "out"}
        return handler(*args, **kwargs)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise _unsupported(
            self,
            "np.asarray/np.array",
            "a traced array has no concrete values while the function is traced",
        )

    # Static attributes.

    @property
    def shape(self) -> Shape:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def ndim(self) -> int:
        return len(self._shape)

    @property
    def size(self) -> int | None:
        return None if None in self._shape else math.prod(self._shape)

    @property
    def T(self) -> TracedArray:
        return np.transpose(self)

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of unsized object")
        if self._shape[0] is None:
            raise _unsupported(self, "len()", "the first dimension is only known at run time")
        return self._shape[0]

    def __iter__(self) -> Iterator[TracedArray]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"TracedArray({self.name!r}, shape={self._shape}, dtype={self._dtype.name})"

    # Conversions a tracer cannot make.

    def __bool__(self) -> bool:
        raise _unsupported(
            self, "bool()", "Python control flow cannot depend on array values; use np.where"
        )

    def __float__(self) -> float:
        raise _unsupported(self, "float()", "the values are only known at run time")

    def __int__(self) -> int:
        raise _unsupported(self, "int()", "the values are only known at run time")

    def __index__(self) -> int:
        raise _unsupported(self, "operator.index()", "the values are only known at run time")

    def __complex__(self) -> complex:
        raise _unsupported(self, "complex()", "the values are only known at run time")

    def item(self, *args: Any) -> Any:
        raise _unsupported(self, "ndarray.item", "the values are only known at run time")

    def tolist(self) -> Any:
        raise _unsupported(self, "ndarray.tolist", "the values are only known at run time")

    # Indexing.

    def __getitem__(self, key: Any) -> TracedArray:
        return _getitem(self, key)

    def __setitem__(self, key: Any, value: Any) -> None:
        raise _unsupported(
            self,
            "item assignment (x[...] = v)",
            "ONNX values are immutable; build the result with np.where or np.concatenate",
        )

    # ndarray methods, through the NumPy functions.

    def astype(
        self,
        dtype: Any,
        order: str = "K",
        casting: str = "unsafe",
        subok: bool = True,
        copy: bool = True,
    ) -> TracedArray:
        return _astype(self, dtype, copy=copy)

    def reshape(self, *shape: Any, order: str = "C", copy: Any = None) -> TracedArray:
        target = shape[0] if len(shape) == 1 and not _is_int(shape[0]) else shape
        return _reshape(self, target, order=order)

    def transpose(self, *axes: Any) -> TracedArray:
        target = axes[0] if len(axes) == 1 and not _is_int(axes[0]) else (axes or None)
        return np.transpose(self, target)

    def flatten(self, order: str = "C") -> TracedArray:
        return _np_copy(_reshape(self, (-1,), order=order))

    def ravel(self, order: str = "C") -> TracedArray:
        return _reshape(self, (-1,), order=order)

    def copy(self, order: str = "K") -> TracedArray:
        return _np_copy(self)

    def sum(self, *args: Any, **kwargs: Any) -> TracedArray:
        return np.sum(self, *args, **kwargs)

    def mean(self, *args: Any, **kwargs: Any) -> TracedArray:
        return np.mean(self, *args, **kwargs)

    def max(self, *args: Any, **kwargs: Any) -> TracedArray:
        return np.max(self, *args, **kwargs)

    def min(self, *args: Any, **kwargs: Any) -> TracedArray:
        return np.min(self, *args, **kwargs)

    def prod(self, *args: Any, **kwargs: Any) -> TracedArray:
        return np.prod(self, *args, **kwargs)

    def std(self, *args: Any, **kwargs: Any) -> TracedArray:
        return np.std(self, *args, **kwargs)

    def var(self, *args: Any, **kwargs: Any) -> TracedArray:
        return np.var(self, *args, **kwargs)

    def any(self, *args: Any, **kwargs: Any) -> TracedArray:
        return np.any(self, *args, **kwargs)

    def all(self, *args: Any, **kwargs: Any) -> TracedArray:
        return np.all(self, *args, **kwargs)

    def argmax(self, *args: Any, **kwargs: Any) -> TracedArray:
        return np.argmax(self, *args, **kwargs)

    def argmin(self, *args: Any, **kwargs: Any) -> TracedArray:
        return np.argmin(self, *args, **kwargs)

    def cumsum(self, *args: Any, **kwargs: Any) -> TracedArray:
        return np.cumsum(self, *args, **kwargs)

    def cumprod(self, *args: Any, **kwargs: Any) -> TracedArray:
        return np.cumprod(self, *args, **kwargs)

    def clip(self, *args: Any, **kwargs: Any) -> TracedArray:
        return np.clip(self, *args, **kwargs)

    def round(self, *args: Any, **kwargs: Any) -> TracedArray:
        return np.round(self, *args, **kwargs)

    def squeeze(self, *args: Any, **kwargs: Any) -> TracedArray:
        return np.squeeze(self, *args, **kwargs)

    def swapaxes(self, axis1: int, axis2: int) -> TracedArray:
        return np.swapaxes(self, axis1, axis2)

    def repeat(self, *args: Any, **kwargs: Any) -> TracedArray:
        return np.repeat(self, *args, **kwargs)

    def take(self, *args: Any, **kwargs: Any) -> TracedArray:
        return np.take(self, *args, **kwargs)

    def dot(self, other: Any) -> TracedArray:
        return np.dot(self, other)

    # In-place operators rebind this object to the new value (x -= m in the docs'
    # antirectifier). Arrays sharing its memory (views) keep the old value, so reading
    # one of them afterwards is refused.

    def _assign(self, result: TracedArray, symbol: str) -> TracedArray:
        _check_fresh(self)
        if result.dtype != self._dtype:
            if not np.can_cast(result.dtype, self._dtype, "same_kind"):
                raise TypeError(
                    f"Cannot cast ufunc output from {result.dtype} to "
                    f"{self._dtype} with casting rule 'same_kind' (`{symbol}`)"
                )
            result = _cast(result, self._dtype)
        if _broadcast(self._shape, result.shape) != _broadcast(self._shape):
            raise ValueError(
                f"non-broadcastable output operand with shape {self._shape} "
                f"doesn't match the broadcast shape {result.shape}"
            )
        self._buffer.version += 1
        self._buffer.changed_by = symbol
        self._version = self._buffer.version
        self.name = result.name
        return self

    def __iadd__(self, other: Any) -> TracedArray:
        return self._assign(np.add(self, other), "+=")

    def __isub__(self, other: Any) -> TracedArray:
        return self._assign(np.subtract(self, other), "-=")

    def __imul__(self, other: Any) -> TracedArray:
        return self._assign(np.multiply(self, other), "*=")

    def __itruediv__(self, other: Any) -> TracedArray:
        return self._assign(np.true_divide(self, other), "/=")

    def __ifloordiv__(self, other: Any) -> TracedArray:
        return self._assign(np.floor_divide(self, other), "//=")

    def __imod__(self, other: Any) -> TracedArray:
        return self._assign(np.remainder(self, other), "%=")

    def __ipow__(self, other: Any) -> TracedArray:
        return self._assign(np.power(self, other), "**=")

    def __imatmul__(self, other: Any) -> TracedArray:
        return self._assign(np.matmul(self, other), "@=")

    def __iand__(self, other: Any) -> TracedArray:
        return self._assign(np.bitwise_and(self, other), "&=")

    def __ior__(self, other: Any) -> TracedArray:
        return self._assign(np.bitwise_or(self, other), "|=")

    def __ixor__(self, other: Any) -> TracedArray:
        return self._assign(np.bitwise_xor(self, other), "^=")


class _Buffer:
    """The memory a traced array and its views share; ``version`` counts in-place updates."""

    __slots__ = ("version", "changed_by")

    def __init__(self) -> None:
        self.version = 0
        self.changed_by = ""


def trace_function(
    builder: GraphBuilder,
    function: Callable,
    inputs: list[Value],
    name: str,
    structure: str = "single",
    kwargs: dict[str, Any] | None = None,
) -> list[Value]:
    """Record ``function(inputs, **kwargs)`` on ``builder`` and return its output values.

    ``structure`` is ``"single"`` (the function gets one array) or ``"list"`` (a list of
    arrays); a list or tuple result gives one value per element.
    """
    arrays = [TracedArray(builder, v.name, v.shape, v.dtype, prefix=name) for v in inputs]
    if structure == "single":
        if len(arrays) != 1:
            raise ValueError(f"structure='single' expects one input, got {len(arrays)}.")
        argument: Any = arrays[0]
    elif structure == "list":
        argument = arrays
    else:
        raise ValueError(f"structure must be 'single' or 'list'. Received: structure={structure!r}")
    result = function(argument, **(kwargs or {}))
    results = list(result) if isinstance(result, (list, tuple)) else [result]
    values = []
    for index, item in enumerate(results):
        if not isinstance(item, TracedArray) or item.builder is not builder:
            raise NotSupportedError(
                f"Output {index} of the function traced for {name!r} is "
                f"{_describe_output(item)}; a traced function must return an array or a flat "
                "list of arrays computed from its inputs. " + _HOW_TO
            )
        _check_fresh(item)
        values.append(Value(item.name, item.shape, item.dtype.name))
    return values


def _describe_output(item: Any) -> str:
    if isinstance(item, (list, tuple)):
        return f"a nested {type(item).__name__}"
    if isinstance(item, TracedArray):
        return "an array traced on another graph"
    return f"a {type(item).__name__}, which does not depend on the function's inputs"


def supported() -> dict[str, list[str]]:
    """The names of the ufuncs and NumPy functions the tracer records."""
    return {
        "ufuncs": sorted(u.__name__ for u in _UFUNCS),
        "functions": sorted({_function_label(f) for f in _FUNCTIONS}),
    }


# Errors and labels.


def _function_label(func: Callable) -> str:
    module = getattr(func, "__module__", None) or "numpy"
    parts = [p for p in module.split(".") if not p.startswith("_")]
    if parts and parts[0] == "numpy":
        parts[0] = "np"
    return ".".join([*parts, getattr(func, "__name__", repr(func))])


def _has_out(out: Any) -> bool:
    if isinstance(out, tuple):
        return any(o is not None for o in out)
    return out is not None


def _out_given(func: Callable, args: Any, kwargs: dict) -> bool:
    if kwargs.get("out") is not None:
        return True
    try:
        bound = inspect.signature(func).bind_partial(*args, **kwargs)
    except (TypeError, ValueError):
        return False
    return bound.arguments.get("out") is not None


def _unsupported(ref: TracedArray | None, operation: str, reason: str) -> NotSupportedError:
    where = f" (in {ref.prefix!r})" if ref is not None else ""
    return NotSupportedError(f"{operation} is not traceable to ONNX{where}: {reason}. {_HOW_TO}")


# Emitting.


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _find_ref(values: Any) -> TracedArray | None:
    if isinstance(values, TracedArray):
        return values
    if isinstance(values, (list, tuple)):
        for item in values:
            found = _find_ref(item)
            if found is not None:
                return found
    return None


def _node(
    ref: TracedArray,
    op_type: str,
    inputs: Sequence[TracedArray | str],
    label: str,
    shape: Shape,
    dtype: Any,
    **attributes: Any,
) -> TracedArray:
    names = [i.name if isinstance(i, TracedArray) else i for i in inputs]
    out = ref.builder.op(op_type, names, f"{ref.prefix}_{label}", **attributes)
    return TracedArray(ref.builder, out, shape, dtype, ref.prefix)


def _ints(ref: TracedArray, values: Any, label: str) -> str:
    return ref.builder.int64s(np.asarray(values, dtype=np.int64), f"{ref.prefix}_{label}")


def _copy(x: TracedArray) -> TracedArray:
    return TracedArray(x.builder, x.name, x.shape, x.dtype, x.prefix)


def _view(source: TracedArray, result: TracedArray) -> TracedArray:
    """``result`` shares ``source``'s memory, as NumPy's view would."""
    result._buffer, result._version = source._buffer, source._version
    return result


def _check_fresh(x: TracedArray) -> None:
    if x._version != x._buffer.version:
        raise _unsupported(
            x,
            f"reading an array after an in-place `{x._buffer.changed_by}` on an array "
            "sharing its memory (a view)",
            "the traced graph cannot update views; compute a new array instead of "
            "updating one in place",
        )


def _constant(ref: TracedArray, array: np.ndarray, label: str) -> str:
    """An initializer holding ``array`` with its exact shape, 0-d included."""
    if array.ndim:
        return ref.builder.constant(array, f"{ref.prefix}_{label}")
    name = ref.builder.unique(f"{ref.prefix}_{label}")
    ref.builder.initializers.append(numpy_helper.from_array(array, name))
    return name


def _lift(ref: TracedArray, value: Any, dtype: Any = None) -> TracedArray:
    """``value`` as a traced array (a constant initializer unless already traced)."""
    if isinstance(value, TracedArray):
        if value.builder is not ref.builder:
            raise ValueError("Traced arrays from different graphs cannot be combined.")
        _check_fresh(value)
        return value if dtype is None else _cast(value, dtype)
    array = np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype)
    if array.dtype == object:
        raise TypeError(f"Cannot use {type(value).__name__} as an array in a traced function.")
    name = _constant(ref, array, "const")
    return TracedArray(ref.builder, name, array.shape, array.dtype, ref.prefix)


def _cast(x: TracedArray, dtype: Any) -> TracedArray:
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    return _node(x, "Cast", [x], "cast", x.shape, dtype, to=onnx_type(dtype))


def _dtype_for_promotion(value: Any) -> Any:
    """What NumPy promotes ``value`` as: Python scalars are weak, the rest strong."""
    if isinstance(value, TracedArray):
        return value.dtype
    if isinstance(value, (bool, np.bool_)):
        return np.dtype(bool)
    if type(value) in (int, float, complex):
        return type(value)
    return np.asarray(value).dtype


def _promotion_operand(value: Any) -> Any:
    """``value`` as np.result_type takes it: Python scalars stay (weak), the rest a dtype."""
    if isinstance(value, TracedArray):
        return value.dtype
    if type(value) in (bool, int, float, complex) or isinstance(value, np.generic):
        return value
    return np.asarray(value).dtype


def _result_type(*values: Any) -> np.dtype:
    return np.result_type(*(_promotion_operand(v) for v in values))


def _stand_in(value: Any) -> Any:
    if isinstance(value, TracedArray):
        return np.ones((1,) * value.ndim, dtype=value.dtype)
    if isinstance(value, (list, tuple)):
        return type(value)(_stand_in(v) for v in value)
    return value


def _probe_dtype(func: Callable, *args: Any, **kwargs: Any) -> np.dtype:
    """The dtype NumPy's ``func`` gives for these arguments (run on size-1 stand-ins)."""
    with np.errstate(all="ignore"):
        return np.asarray(func(*_stand_in(args), **kwargs)).dtype


# Static shapes.


def _broadcast(*shapes: Shape) -> Shape:
    ndim = max((len(s) for s in shapes), default=0)
    out: list[int | None] = []
    for axis in range(ndim):
        dims = [s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ValueError(
                "operands could not be broadcast together with shapes "
                + " ".join(str(s) for s in shapes)
            )
        out.append(known.pop() if known else (None if None in dims else 1))
    return tuple(out)


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    values = (axis,) if not isinstance(axis, (tuple, list)) else axis
    out = []
    for value in values:
        index = operator.index(value)
        if not -ndim <= index < ndim:
            raise np.exceptions.AxisError(index, ndim)
        out.append(index % ndim)
    if len(set(out)) != len(out):
        raise ValueError("duplicate value in 'axis'")
    return tuple(out)


def _reduced(shape: Shape, axes: Sequence[int], keepdims: bool) -> Shape:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _matmul_shape(a: Shape, b: Shape) -> Shape:
    if not a or not b:
        raise ValueError("matmul: Input operand does not have enough dimensions")
    left = (1, *a) if len(a) == 1 else a
    right = (*b, 1) if len(b) == 1 else b
    k1, k2 = left[-1], right[-2]
    if k1 is not None and k2 is not None and k1 != k2:
        raise ValueError(
            f"matmul: Input operand 1 has a mismatch in its core dimension 0 "
            f"(size {k2} is different from {k1})"
        )
    batch = _broadcast(left[:-2], right[:-2])
    return batch + (a[-2],) * (len(a) > 1) + (b[-1],) * (len(b) > 1)


# Ufuncs.

UfuncEmitter = Callable[[list[TracedArray], tuple[np.dtype, ...]], Any]


def _call_ufunc(ref: TracedArray, ufunc: np.ufunc, inputs: tuple, kwargs: dict) -> Any:
    emitter = _UFUNCS.get(ufunc)
    if emitter is None:
        raise _unsupported(ref, f"np.{ufunc.__name__}", "this ufunc has no ONNX equivalent here")
    if kwargs.pop("where", True) is not True:
        raise _unsupported(
            ref,
            f"np.{ufunc.__name__}(..., where=...)",
            "masked ufuncs leave the output's other elements undefined",
        )
    dtype = kwargs.pop("dtype", None)
    extra = set(kwargs) - {"casting", "order", "subok"}
    if extra:
        raise _unsupported(
            ref,
            f"np.{ufunc.__name__}(..., {sorted(extra)[0]}=...)",
            "only the dtype argument is supported",
        )
    options = {}
    if dtype is not None:
        options["signature"] = (None,) * ufunc.nin + (np.dtype(dtype),) * ufunc.nout
    operands = tuple(_dtype_for_promotion(v) for v in inputs) + (None,) * ufunc.nout
    loop = ufunc.resolve_dtypes(operands, **options)
    args = [_lift(ref, value, loop_dtype) for value, loop_dtype in zip(inputs, loop, strict=False)]
    outs = tuple(loop[ufunc.nin :])
    if _HALF not in loop:
        return emitter(args, outs)
    # NumPy computes its float16 loops in float32 and rounds the result, so do the same.
    result = emitter([_cast(a, _widened(a.dtype)) for a in args], tuple(map(_widened, outs)))
    if isinstance(result, tuple):
        return tuple(_cast(r, d) for r, d in zip(result, outs, strict=True))
    return _cast(result, outs[0])


_HALF = np.dtype(np.float16)


def _widened(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float32) if dtype == _HALF else dtype


def _elementwise(
    op_type: str,
    args: Sequence[TracedArray],
    dtype: Any,
    shape: Shape | None = None,
    **attributes: Any,
) -> TracedArray:
    shape = _broadcast(*(a.shape for a in args)) if shape is None else shape
    wide = _integer_compute_type(op_type, args[0])
    if wide is not None:
        wider = [_cast(a, wide) for a in args]
        out = _node(args[0], op_type, wider, op_type.lower(), shape, wide, **attributes)
        return _cast(out, dtype)
    return _node(args[0], op_type, args, op_type.lower(), shape, dtype, **attributes)


def _integer_compute_type(op_type: str, x: TracedArray) -> np.dtype | None:
    """A wider integer type for ops ONNX lacks on small integers (results wrap like NumPy)."""
    if x.dtype.kind not in "iu" or x.dtype.itemsize >= 8:
        return None
    small = x.dtype.itemsize < 4
    if op_type == "Neg" and x.dtype.kind == "u" or op_type == "Pow" and small:
        return np.dtype(np.int64)
    if op_type in ("Add", "Sub", "Mul", "Div") and small and x.builder.opset < 14:
        return np.dtype(np.int32)
    return None


def _prim(op_type: str, **attributes: Any) -> UfuncEmitter:
    def emit(args: list[TracedArray], outs: tuple[np.dtype, ...]) -> TracedArray:
        return _elementwise(op_type, args, outs[0], **attributes)

    return emit


def _composite(function: Callable[..., Any]) -> UfuncEmitter:
    def emit(args: list[TracedArray], outs: tuple[np.dtype, ...]) -> Any:
        result = function(*args)
        if isinstance(result, tuple):
            return tuple(_cast(r, d) for r, d in zip(result, outs, strict=True))
        return _cast(result, outs[0])

    return emit


def _identity(args: list[TracedArray], outs: tuple[np.dtype, ...]) -> TracedArray:
    return _cast(_copy(args[0]), outs[0])


def _by_kind(
    default: UfuncEmitter, *, floats: UfuncEmitter | None = None, bools: UfuncEmitter | None = None
) -> UfuncEmitter:
    def emit(args: list[TracedArray], outs: tuple[np.dtype, ...]) -> Any:
        kind = args[0].dtype.kind
        chosen = {"f": floats, "c": floats, "b": bools}.get(kind) or default
        return chosen(args, outs)

    return emit


def _refuse(name: str, supported_kind: str) -> UfuncEmitter:
    def refuse(args: list[TracedArray], outs: tuple[np.dtype, ...]) -> Any:
        raise _unsupported(
            args[0],
            f"np.{name} on {args[0].dtype} arrays",
            f"only {supported_kind} arrays are supported",
        )

    return refuse


def _bool_only(name: str, op_type: str) -> UfuncEmitter:
    return _by_kind(
        _refuse(name, "boolean (np.logical_* takes truth values)"), bools=_prim(op_type)
    )


def _logical(op_type: str) -> UfuncEmitter:
    def emit(args: list[TracedArray], outs: tuple[np.dtype, ...]) -> TracedArray:
        return _elementwise(op_type, [_cast(a, bool) for a in args], outs[0])

    return emit


def _ordered(op_type: str) -> UfuncEmitter:
    def on_bools(args: list[TracedArray], outs: tuple[np.dtype, ...]) -> TracedArray:
        return _elementwise(op_type, [_cast(a, np.int32) for a in args], outs[0])

    return _by_kind(_prim(op_type), bools=on_bools)


def _fmod_node(a: TracedArray, b: TracedArray) -> TracedArray:
    return _elementwise("Mod", [a, b], a.dtype, fmod=1)


def _float_divmod(a: TracedArray, b: TracedArray) -> tuple[TracedArray, TracedArray]:
    """NumPy's npy_divmod: floor division and remainder with Python's signs."""
    mod = _fmod_node(a, b)
    div = (a - mod) / b
    fix = np.logical_and(mod != 0, np.logical_xor(b < 0, mod < 0))
    mod = np.where(fix, mod + b, mod)
    div = np.where(fix, div - 1, div)
    floor = np.floor(div)
    floor = np.where(div - floor > 0.5, floor + 1, floor)
    return np.where(b == 0, a / b, floor), mod


def _safe_divisor(b: TracedArray) -> tuple[TracedArray, TracedArray]:
    """Where ``b`` is 0 (NumPy answers 0 for integers), and ``b`` with 1 there and, for a
    signed type, where it is -1: onnxruntime's integer Div of the type's minimum by -1
    traps (SIGFPE, the whole process), so the callers take that quotient as a negation."""
    zero = b == 0
    unsafe = np.logical_or(zero, b == -1) if np.issubdtype(b.dtype, np.signedinteger) else zero
    return zero, np.where(unsafe, 1, b)


def _int_floor_divide(a: TracedArray, b: TracedArray) -> TracedArray:
    zero, safe = _safe_divisor(b)
    quotient = _elementwise("Div", [a, safe], a.dtype)
    rest = a - quotient * safe
    fix = np.logical_and(rest != 0, np.logical_xor(rest < 0, safe < 0))
    floor = np.where(fix, quotient - 1, quotient)
    if np.issubdtype(b.dtype, np.signedinteger):  # by -1: the negation, wrapping as NumPy
        floor = np.where(b == -1, -a, floor)
    return np.where(zero, 0, floor)


def _int_remainder(a: TracedArray, b: TracedArray) -> TracedArray:
    zero, safe = _safe_divisor(b)  # by -1 as by 1: a remainder of 0
    return np.where(zero, 0, _elementwise("Mod", [a, safe], a.dtype))


def _int_fmod(a: TracedArray, b: TracedArray) -> TracedArray:
    zero, safe = _safe_divisor(b)  # by -1 as by 1: a remainder of 0
    return np.where(zero, 0, _fmod_node(a, safe))


def _int_divmod(a: TracedArray, b: TracedArray) -> tuple[TracedArray, TracedArray]:
    return _int_floor_divide(a, b), _int_remainder(a, b)


def _fmax(a: TracedArray, b: TracedArray) -> TracedArray:
    return np.where(np.isnan(b), a, np.where(np.isnan(a), b, np.maximum(a, b)))


def _fmin(a: TracedArray, b: TracedArray) -> TracedArray:
    return np.where(np.isnan(b), a, np.where(np.isnan(a), b, np.minimum(a, b)))


def _logaddexp(a: TracedArray, b: TracedArray) -> TracedArray:
    peak = np.maximum(a, b)
    spread = np.log1p(np.exp(-np.abs(a - b)))
    return np.where(a == b, a + math.log(2.0), peak + spread)


def _trunc(a: TracedArray) -> TracedArray:
    return np.where(a < 0, np.ceil(a), np.floor(a))


def _isfinite(a: TracedArray) -> TracedArray:
    return np.logical_not(np.logical_or(np.isnan(a), np.isinf(a)))


def _float_op(op_type: str, minimum_opset: int = MIN_OPSET) -> UfuncEmitter:
    """IsNaN/IsInf: always False on integers; float16 needs ``minimum_opset``."""

    def on_floats(args: list[TracedArray], outs: tuple[np.dtype, ...]) -> TracedArray:
        (a,) = args
        if a.dtype.itemsize < 4 and a.builder.opset < minimum_opset:
            a = _cast(a, np.float32)
        return _elementwise(op_type, [a], outs[0])

    return _by_kind(_composite(lambda a: a != a), floats=on_floats)


def _float32_kernel(name: str, op_type: str, composite: Callable | None = None) -> UfuncEmitter:
    """An op onnxruntime only has a float32 kernel for: other types use ``composite``."""

    def emit(args: list[TracedArray], outs: tuple[np.dtype, ...]) -> Any:
        if outs[0] == np.float32:
            return _elementwise(op_type, args, outs[0])
        if composite is None:
            raise _unsupported(
                args[0],
                f"np.{name} on {outs[0]} arrays",
                "onnxruntime runs this op on float32 only; cast with .astype(np.float32)",
            )
        return _composite(composite)(args, outs)

    return emit


def _arcsinh(a: TracedArray) -> TracedArray:
    magnitude = np.abs(a)
    return np.sign(a) * np.log(magnitude + np.sqrt(magnitude * magnitude + 1))


def _rounding(op_type: str | None, function: Callable | None = None) -> UfuncEmitter:
    floats = _prim(op_type) if op_type else _composite(function)
    return _by_kind(_identity, floats=floats)


def _scaled(factor: float) -> UfuncEmitter:
    return _composite(lambda a: a * factor)


def _matmul(args: list[TracedArray], outs: tuple[np.dtype, ...]) -> TracedArray:
    a, b = args
    return _elementwise("MatMul", args, outs[0], shape=_matmul_shape(a.shape, b.shape))


_UFUNCS: dict[np.ufunc, UfuncEmitter] = {
    np.add: _by_kind(_prim("Add"), bools=_prim("Or")),
    np.subtract: _prim("Sub"),
    np.multiply: _by_kind(_prim("Mul"), bools=_prim("And")),
    np.true_divide: _prim("Div"),
    np.floor_divide: _by_kind(
        _composite(_int_floor_divide), floats=_composite(lambda a, b: _float_divmod(a, b)[0])
    ),
    np.remainder: _by_kind(
        _composite(_int_remainder), floats=_composite(lambda a, b: _float_divmod(a, b)[1])
    ),
    np.fmod: _by_kind(_composite(_int_fmod), floats=_composite(_fmod_node)),
    np.divmod: _by_kind(_composite(_int_divmod), floats=_composite(_float_divmod)),
    np.power: _prim("Pow"),
    np.float_power: _prim("Pow"),
    np.negative: _prim("Neg"),
    np.positive: _identity,
    np.absolute: _by_kind(_prim("Abs"), bools=_identity),
    np.sign: _prim("Sign"),
    np.square: _composite(lambda a: np.multiply(a, a)),
    np.sqrt: _prim("Sqrt"),
    np.cbrt: _composite(lambda a: np.sign(a) * np.power(np.abs(a), 1.0 / 3.0)),
    np.reciprocal: _by_kind(_refuse("reciprocal", "floating-point"), floats=_prim("Reciprocal")),
    np.exp: _prim("Exp"),
    np.exp2: _composite(lambda a: np.power(2.0, a)),
    np.expm1: _composite(lambda a: np.exp(a) - 1),
    np.log: _prim("Log"),
    np.log2: _composite(lambda a: np.log(a) / math.log(2.0)),
    np.log10: _composite(lambda a: np.log(a) / math.log(10.0)),
    np.log1p: _composite(lambda a: np.log(a + 1)),
    np.logaddexp: _composite(_logaddexp),
    np.maximum: _by_kind(_prim("Max"), bools=_prim("Or")),
    np.minimum: _by_kind(_prim("Min"), bools=_prim("And")),
    np.fmax: _by_kind(_composite(np.maximum), floats=_composite(_fmax)),
    np.fmin: _by_kind(_composite(np.minimum), floats=_composite(_fmin)),
    np.sin: _prim("Sin"),
    np.cos: _prim("Cos"),
    np.tan: _float32_kernel("tan", "Tan", lambda a: np.sin(a) / np.cos(a)),
    np.arcsin: _float32_kernel("arcsin", "Asin"),
    np.arccos: _float32_kernel("arccos", "Acos"),
    np.arctan: _float32_kernel("arctan", "Atan"),
    np.sinh: _float32_kernel("sinh", "Sinh", lambda a: (np.exp(a) - np.exp(-a)) * 0.5),
    np.cosh: _float32_kernel("cosh", "Cosh", lambda a: (np.exp(a) + np.exp(-a)) * 0.5),
    np.tanh: _prim("Tanh"),
    np.arcsinh: _float32_kernel("arcsinh", "Asinh", _arcsinh),
    np.arccosh: _float32_kernel("arccosh", "Acosh", lambda a: np.log(a + np.sqrt(a * a - 1))),
    np.arctanh: _float32_kernel("arctanh", "Atanh", lambda a: np.log((1 + a) / (1 - a)) * 0.5),
    np.deg2rad: _scaled(math.pi / 180.0),
    np.radians: _scaled(math.pi / 180.0),
    np.rad2deg: _scaled(180.0 / math.pi),
    np.degrees: _scaled(180.0 / math.pi),
    np.floor: _rounding("Floor"),
    np.ceil: _rounding("Ceil"),
    np.rint: _rounding("Round"),
    np.trunc: _rounding(None, _trunc),
    np.equal: _prim("Equal"),
    np.not_equal: _composite(lambda a, b: np.logical_not(np.equal(a, b))),
    np.less: _ordered("Less"),
    np.less_equal: _ordered("LessOrEqual"),
    np.greater: _ordered("Greater"),
    np.greater_equal: _ordered("GreaterOrEqual"),
    np.logical_and: _logical("And"),
    np.logical_or: _logical("Or"),
    np.logical_xor: _logical("Xor"),
    np.logical_not: _logical("Not"),
    np.bitwise_and: _bool_only("bitwise_and", "And"),
    np.bitwise_or: _bool_only("bitwise_or", "Or"),
    np.bitwise_xor: _bool_only("bitwise_xor", "Xor"),
    np.invert: _bool_only("invert", "Not"),
    np.isnan: _float_op("IsNaN"),
    np.isinf: _float_op("IsInf", minimum_opset=20),
    np.isfinite: _by_kind(_composite(lambda a: a == a), floats=_composite(_isfinite)),
    np.matmul: _matmul,
}


# Reductions.


def _reject(label: str, ref: TracedArray | None, **given: bool) -> None:
    for argument, used in given.items():
        if used:
            raise _unsupported(
                ref, f"{label}(..., {argument}=...)", "the argument has no ONNX equivalent here"
            )


def _keepdims(value: Any) -> bool:
    return False if value is _UNSET else bool(value)


def _reduce_node(
    x: TracedArray, op_type: str, axes: tuple[int, ...], keepdims: bool, label: str
) -> TracedArray:
    if not axes:
        return _copy(x)
    shape = _reduced(x.shape, axes, keepdims)
    if op_type == "ReduceSum" or x.builder.opset >= 18:
        inputs = [x.name, _ints(x, sorted(axes), f"{label}_axes")]
        return _node(x, op_type, inputs, label, shape, x.dtype, keepdims=int(keepdims))
    return _node(x, op_type, [x], label, shape, x.dtype, keepdims=int(keepdims), axes=sorted(axes))


def _reduction(
    func: Callable, op_type: str, label: str, a: Any, axis: Any, keepdims: Any, **numpy_kwargs: Any
) -> TracedArray:
    ref = _find_ref(a)
    x = _lift(ref, a)
    dtype = _probe_dtype(func, x, axis=axis, **numpy_kwargs)
    return _reduce_node(_cast(x, dtype), op_type, _axes(axis, x.ndim), _keepdims(keepdims), label)


def _sum(
    a: Any,
    axis: Any = None,
    dtype: Any = None,
    out: Any = None,
    keepdims: Any = _UNSET,
    initial: Any = _UNSET,
    where: Any = True,
) -> TracedArray:
    _reject("np.sum", _find_ref(a), initial=initial is not _UNSET, where=where is not True)
    return _reduction(np.sum, "ReduceSum", "sum", a, axis, keepdims, dtype=dtype)


def _prod(
    a: Any,
    axis: Any = None,
    dtype: Any = None,
    out: Any = None,
    keepdims: Any = _UNSET,
    initial: Any = _UNSET,
    where: Any = True,
) -> TracedArray:
    _reject("np.prod", _find_ref(a), initial=initial is not _UNSET, where=where is not True)
    return _reduction(np.prod, "ReduceProd", "prod", a, axis, keepdims, dtype=dtype)


def _mean(
    a: Any,
    axis: Any = None,
    dtype: Any = None,
    out: Any = None,
    keepdims: Any = _UNSET,
    *,
    where: Any = True,
) -> TracedArray:
    ref = _find_ref(a)
    _reject("np.mean", ref, where=where is not True)
    x = _lift(ref, a)
    axes = _axes(axis, x.ndim)
    if all(x.shape[i] not in (None, 0) for i in axes):
        return _reduction(np.mean, "ReduceMean", "mean", x, axis, keepdims, dtype=dtype)
    # An axis that may be empty: onnxruntime's ReduceMean answers 0 there, NumPy 0/0 =
    # NaN; so the sum over the count, the count read from the shape.
    x = _cast(x, _probe_dtype(np.mean, x, axis=axis, dtype=dtype))
    total = _reduce_node(x, "ReduceSum", axes, _keepdims(keepdims), "mean_sum")
    shape = _node(x, "Shape", [x], "mean_shape", (x.ndim,), np.int64)
    sizes = _node(
        x,
        "Gather",
        [shape, _ints(x, list(axes), "mean_axes")],
        "mean_sizes",
        (len(axes),),
        np.int64,
        axis=0,
    )
    count = _reduce_node(sizes, "ReduceProd", (0,), False, "mean_count")
    return total / _cast(count, x.dtype)


def _extreme(op_type: str, label: str, on_bools: Callable) -> Callable[..., TracedArray]:
    def handler(
        a: Any,
        axis: Any = None,
        out: Any = None,
        keepdims: Any = _UNSET,
        initial: Any = _UNSET,
        where: Any = True,
    ) -> TracedArray:
        ref = _find_ref(a)
        _reject(f"np.{label}", ref, initial=initial is not _UNSET, where=where is not True)
        x = _lift(ref, a)
        if x.dtype == bool:
            return on_bools(x, axis=axis, keepdims=keepdims)
        axes, keep = _axes(axis, x.ndim), _keepdims(keepdims)
        result = _reduce_node(x, op_type, axes, keep, label)
        if x.dtype.kind not in "fc" or not axes:
            return result
        # ONNX's ReduceMax/ReduceMin skip NaN; NumPy propagates it.
        nan = np.sum(np.where(np.isnan(x), x, 0), axis=axes, keepdims=keep)
        return np.where(np.isnan(nan), nan, result)

    return handler


def _any(
    a: Any, axis: Any = None, out: Any = None, keepdims: Any = _UNSET, *, where: Any = True
) -> TracedArray:
    ref = _find_ref(a)
    _reject("np.any", ref, where=where is not True)
    truth = _cast(_lift(ref, a), bool)
    count = np.sum(truth, axis=axis, keepdims=_keepdims(keepdims), dtype=np.int64)
    return np.greater(count, 0)


def _all(
    a: Any, axis: Any = None, out: Any = None, keepdims: Any = _UNSET, *, where: Any = True
) -> TracedArray:
    ref = _find_ref(a)
    _reject("np.all", ref, where=where is not True)
    truth = _cast(_lift(ref, a), bool)
    return np.logical_not(_any(np.logical_not(truth), axis=axis, keepdims=_keepdims(keepdims)))


def _var(
    a: Any,
    axis: Any = None,
    dtype: Any = None,
    out: Any = None,
    ddof: Any = 0,
    keepdims: Any = _UNSET,
    *,
    where: Any = True,
    mean: Any = _UNSET,
    correction: Any = _UNSET,
) -> TracedArray:
    ref = _find_ref(a)
    _reject("np.var", ref, where=where is not True, mean=mean is not _UNSET)
    ddof = ddof if correction is _UNSET else correction
    x = _lift(ref, a)
    x = _cast(x, _probe_dtype(np.var, x, axis=axis, dtype=dtype))
    axes = _axes(axis, x.ndim)
    deviation = x - np.mean(x, axis=axes, keepdims=True)
    squares = deviation * deviation
    if not ddof:
        return np.mean(squares, axis=axes, keepdims=keepdims)
    if any(x.shape[i] is None for i in axes):
        raise _unsupported(
            ref, "np.var(..., ddof=...)", "ddof needs the reduced sizes to be static"
        )
    count = math.prod(x.shape[i] for i in axes)
    return np.sum(squares, axis=axes, keepdims=keepdims) / float(count - ddof)


def _std(
    a: Any,
    axis: Any = None,
    dtype: Any = None,
    out: Any = None,
    ddof: Any = 0,
    keepdims: Any = _UNSET,
    *,
    where: Any = True,
    mean: Any = _UNSET,
    correction: Any = _UNSET,
) -> TracedArray:
    return np.sqrt(
        _var(a, axis, dtype, None, ddof, keepdims, where=where, mean=mean, correction=correction)
    )


def _arg(op_type: str, label: str) -> Callable[..., TracedArray]:
    def handler(
        a: Any, axis: Any = None, out: Any = None, *, keepdims: Any = _UNSET
    ) -> TracedArray:
        x = _lift(_find_ref(a), a)
        keep = _keepdims(keepdims)
        if axis is None:
            result = handler(_reshape_node(x, [-1]), 0)
            return _reshape_node(result, [1] * x.ndim) if keep else result
        (index,) = _axes(axis, x.ndim)
        if x.dtype == bool:
            x = _cast(x, np.int32)
        shape = _reduced(x.shape, (index,), keep)
        attributes = {"axis": index, "keepdims": int(keep), "select_last_index": 0}
        result = _node(x, op_type, [x], label, shape, np.intp, **attributes)
        if x.dtype.kind != "f":
            return result
        # ONNX's ArgMax/ArgMin skip NaN; NumPy returns the first NaN's index.
        nan = np.isnan(x)
        first_nan = _node(x, "ArgMax", [_cast(nan, np.int32)], label, shape, np.intp, **attributes)
        return np.where(np.any(nan, axis=index, keepdims=keep), first_nan, result)

    return handler


def _cumulative(func: Callable, label: str, emit: Callable) -> Callable[..., TracedArray]:
    def handler(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> TracedArray:
        x = _lift(_find_ref(a), a)
        x = _cast(x, _probe_dtype(func, x, axis=axis, dtype=dtype))
        if axis is None:
            x, axis = _reshape_node(x, [-1]), 0
        (index,) = _axes(axis, x.ndim)
        return emit(x, index)

    return handler


def _cumsum_node(x: TracedArray, axis: int) -> TracedArray:
    axis_name = _constant(x, np.asarray(axis, dtype=np.int64), "cumsum_axis")
    return _node(x, "CumSum", [x.name, axis_name], "cumsum", x.shape, x.dtype)


def _cumprod_nodes(x: TracedArray, axis: int) -> TracedArray:
    length = x.shape[axis]
    if length is None:
        raise _unsupported(x, "np.cumprod", "the length along the axis must be static")
    if length <= 1:
        return _copy(x)
    parts = _split_sizes(x, [1] * length, axis)
    running = [parts[0]]
    for part in parts[1:]:
        running.append(running[-1] * part)
    return np.concatenate(running, axis=axis)


def _cumsum_via_accumulate(a: Any, axis: Any = 0, dtype: Any = None, **kwargs: Any) -> Any:
    return np.cumsum(a, axis=axis, dtype=dtype, **kwargs)


def _cumprod_via_accumulate(a: Any, axis: Any = 0, dtype: Any = None, **kwargs: Any) -> Any:
    return np.cumprod(a, axis=axis, dtype=dtype, **kwargs)


# Shapes and layout.


def _astype(x: Any, dtype: Any, /, *, copy: bool = True, device: Any = None) -> TracedArray:
    ref = _find_ref(x)
    x = _lift(ref, x)
    if np.dtype(dtype) == x.dtype:
        return _copy(x) if copy else x
    return _cast(x, dtype)


def _reshape(
    a: Any, shape: Any = None, order: str = "C", *, newshape: Any = None, copy: Any = None
) -> TracedArray:
    x = _lift(_find_ref(a), a)
    if order != "C":
        raise _unsupported(x, f"np.reshape(..., order={order!r})", "only C order is supported")
    target = shape if shape is not None else newshape
    target = [target] if _is_int(target) or target is None else list(target)
    dims = [None if d is None else operator.index(d) for d in target]
    return _view(x, _reshape_node(x, dims))


def _reshape_node(x: TracedArray, dims: list[int | None]) -> TracedArray:
    unknown = [i for i, d in enumerate(dims) if d is None or d == -1]
    if len(unknown) > 1:
        raise _unsupported(
            x,
            f"np.reshape to {tuple(dims)}",
            "only one dimension may be unknown (-1 or the batch) in a traced reshape",
        )
    if any(d is not None and (d == 0 or d < -1) for d in dims):
        raise _unsupported(x, f"np.reshape to {tuple(dims)}", "sizes must be positive or -1")
    static = [d for d in dims if d is not None and d != -1]
    known_in = [d for d in x.shape if d is not None]
    out: list[int | None] = list(dims)
    emitted: list[int] = [-1 if d is None else d for d in dims]
    if unknown:
        (i,) = unknown
        if None not in x.shape:
            total, rest = math.prod(x.shape), math.prod(static)
            if rest == 0 or total % rest:
                raise ValueError(f"cannot reshape array of size {total} into shape {tuple(dims)}")
            out[i] = emitted[i] = total // rest
        else:
            out[i] = None
            unknown_in = [j for j, d in enumerate(x.shape) if d is None]
            if unknown_in == [i] and math.prod(known_in) == math.prod(static):
                emitted[i] = 0
    elif None not in x.shape and math.prod(x.shape) != math.prod(static):
        raise ValueError(
            f"cannot reshape array of size {math.prod(x.shape)} into shape {tuple(dims)}"
        )
    if tuple(out) == x.shape and None not in x.shape:
        return _copy(x)
    return _node(x, "Reshape", [x.name, _ints(x, emitted, "shape")], "reshape", tuple(out), x.dtype)


def _transpose_node(x: TracedArray, perm: Sequence[int]) -> TracedArray:
    perm = list(perm)
    if perm == list(range(x.ndim)):
        return _view(x, _copy(x))
    shape = tuple(x.shape[p] for p in perm)
    return _view(x, _node(x, "Transpose", [x], "transpose", shape, x.dtype, perm=perm))


def _transpose(a: Any, axes: Any = None) -> TracedArray:
    x = _lift(_find_ref(a), a)
    if axes is None:
        return _transpose_node(x, range(x.ndim)[::-1])
    perm = _axes(tuple(axes), x.ndim)
    if len(perm) != x.ndim:
        raise ValueError("axes don't match array")
    return _transpose_node(x, perm)


def _swapaxes(a: Any, axis1: int, axis2: int) -> TracedArray:
    x = _lift(_find_ref(a), a)
    (first,), (second,) = _axes(axis1, x.ndim), _axes(axis2, x.ndim)
    perm = list(range(x.ndim))
    perm[first], perm[second] = perm[second], perm[first]
    return _transpose_node(x, perm)


def _moveaxis(a: Any, source: Any, destination: Any) -> TracedArray:
    x = _lift(_find_ref(a), a)
    source, destination = _axes(source, x.ndim), _axes(destination, x.ndim)
    if len(source) != len(destination):
        raise ValueError(
            "`source` and `destination` arguments must have the same number of elements"
        )
    order = [n for n in range(x.ndim) if n not in source]
    for dest, src in sorted(zip(destination, source, strict=True)):
        order.insert(dest, src)
    return _transpose_node(x, order)


def _unsqueeze(x: TracedArray, axes: Sequence[int]) -> TracedArray:
    if not axes:
        return x
    shape = list(x.shape)
    for axis in sorted(axes):
        shape.insert(axis, 1)
    inputs = [x.name, _ints(x, sorted(axes), "unsqueeze_axes")]
    return _node(x, "Unsqueeze", inputs, "unsqueeze", tuple(shape), x.dtype)


def _squeeze_node(x: TracedArray, axes: Sequence[int]) -> TracedArray:
    if not axes:
        return x
    shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    inputs = [x.name, _ints(x, sorted(axes), "squeeze_axes")]
    return _node(x, "Squeeze", inputs, "squeeze", shape, x.dtype)


def _expand_dims(a: Any, axis: Any) -> TracedArray:
    x = _lift(_find_ref(a), a)
    count = 1 if not isinstance(axis, (tuple, list)) else len(axis)
    return _view(x, _unsqueeze(x, _axes(axis, x.ndim + count)))


def _squeeze(a: Any, axis: Any = None) -> TracedArray:
    x = _lift(_find_ref(a), a)
    if axis is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    else:
        axes = _axes(axis, x.ndim)
        if any(x.shape[i] not in (1, None) for i in axes):
            raise ValueError("cannot select an axis to squeeze out which has size not equal to one")
    return _view(x, _squeeze_node(x, axes) if axes else _copy(x))


def _ravel(a: Any, order: str = "C") -> TracedArray:
    return _reshape(a, (-1,), order=order)


def _broadcast_to(array: Any, shape: Any, subok: bool = False) -> TracedArray:
    x = _lift(_find_ref(array), array)
    target = (shape,) if _is_int(shape) or shape is None else tuple(shape)
    out = _broadcast(x.shape, target)
    if len(out) != len(target) or any(
        t is not None and o != t for o, t in zip(out, target, strict=True)
    ):
        raise ValueError(f"cannot broadcast shape {x.shape} to {target}")
    expand = [1 if d is None else d for d in target]
    return _view(
        x, _node(x, "Expand", [x.name, _ints(x, expand, "shape")], "expand", tuple(target), x.dtype)
    )


def _flip(m: Any, axis: Any = None) -> TracedArray:
    x = _lift(_find_ref(m), m)
    axes = _axes(axis, x.ndim)
    if not axes:
        return _view(x, _copy(x))
    count = len(axes)
    inputs = [
        x.name,
        _ints(x, [-1] * count, "starts"),
        _ints(x, [_INT64_MIN] * count, "ends"),
        _ints(x, axes, "axes"),
        _ints(x, [-1] * count, "steps"),
    ]
    return _view(x, _node(x, "Slice", inputs, "flip", x.shape, x.dtype))


# Joining, splitting and repeating.


def _join_dtype(arrays: Sequence[Any], dtype: Any) -> np.dtype:
    if dtype is not None:
        return np.dtype(dtype)
    return _result_type(*arrays)


def _concat_nodes(ref: TracedArray, parts: list[TracedArray], axis: int) -> TracedArray:
    ranks = {p.ndim for p in parts}
    if len(ranks) != 1:
        raise ValueError(
            "all the input array dimensions except for the concatenation axis must match exactly"
        )
    (rank,) = ranks
    if rank == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    (index,) = _axes(axis, rank)
    shape: list[int | None] = []
    for i in range(rank):
        dims = [p.shape[i] for p in parts]
        if i == index:
            shape.append(None if None in dims else sum(dims))
            continue
        known = {d for d in dims if d is not None}
        if len(known) > 1:
            raise ValueError(
                "all the input array dimensions except for the concatenation "
                f"axis must match exactly; got sizes {dims} along axis {i}"
            )
        shape.append(known.pop() if known else None)
    if len(parts) == 1:
        return _copy(parts[0])
    return _node(ref, "Concat", parts, "concat", tuple(shape), parts[0].dtype, axis=index)


def _concatenate(
    arrays: Any, axis: Any = 0, out: Any = None, *, dtype: Any = None, casting: str = "same_kind"
) -> TracedArray:
    arrays = list(arrays)
    ref = _find_ref(arrays)
    if not arrays:
        raise ValueError("need at least one array to concatenate")
    target = _join_dtype(arrays, dtype)
    parts = [_lift(ref, a, target) for a in arrays]
    if axis is None:
        parts, axis = [_reshape_node(p, [-1]) for p in parts], 0
    return _concat_nodes(ref, parts, axis)


def _stack(
    arrays: Any, axis: int = 0, out: Any = None, *, dtype: Any = None, casting: str = "same_kind"
) -> TracedArray:
    arrays = list(arrays)
    ref = _find_ref(arrays)
    if not arrays:
        raise ValueError("need at least one array to stack")
    target = _join_dtype(arrays, dtype)
    parts = [_lift(ref, a, target) for a in arrays]
    if len({p.ndim for p in parts}) != 1:
        raise ValueError("all input arrays must have the same shape")
    (index,) = _axes(axis, parts[0].ndim + 1)
    return _concat_nodes(ref, [_unsqueeze(p, (index,)) for p in parts], index)


def _split_sizes(x: TracedArray, sizes: list[int], axis: int) -> list[TracedArray]:
    outputs = x.builder.op(
        "Split",
        [x.name, _ints(x, sizes, "split")],
        f"{x.prefix}_split",
        outputs=len(sizes),
        axis=axis,
    )
    if isinstance(outputs, str):
        outputs = [outputs]
    shapes = [x.shape[:axis] + (size,) + x.shape[axis + 1 :] for size in sizes]
    return [
        TracedArray(x.builder, name, shape, x.dtype, x.prefix)
        for name, shape in zip(outputs, shapes, strict=True)
    ]


def _split(ary: Any, indices_or_sections: Any, axis: int = 0) -> list[TracedArray]:
    x = _lift(_find_ref(ary), ary)
    (index,) = _axes(axis, x.ndim)
    length = x.shape[index]
    if length is None:
        raise _unsupported(x, "np.split", "the length along the axis must be static")
    if _is_int(indices_or_sections):
        sections = int(indices_or_sections)
        if sections <= 0 or length % sections:
            raise ValueError("array split does not result in an equal division")
        sizes = [length // sections] * sections
    else:
        bounds = [
            0,
            *(
                min(max(int(i) if i >= 0 else int(i) + length, 0), length)
                for i in indices_or_sections
            ),
            length,
        ]
        sizes = [max(end - start, 0) for start, end in zip(bounds, bounds[1:], strict=False)]
    if any(size == 0 for size in sizes) or sum(sizes) != length:
        raise _unsupported(x, "np.split", "empty or overlapping pieces are not supported")
    if len(sizes) == 1:
        return [_copy(x)]
    return [_view(x, part) for part in _split_sizes(x, sizes, index)]


def _repeat(a: Any, repeats: Any, axis: Any = None) -> TracedArray:
    x = _lift(_find_ref(a), a)
    counts = np.unique(np.asarray(repeats).reshape(-1))
    if counts.size != 1 or not np.issubdtype(counts.dtype, np.integer):
        raise _unsupported(x, "np.repeat", "only one repeat count for every element is supported")
    count = int(counts[0])
    if count < 0:
        raise ValueError("repeats may not contain negative values.")
    if count == 0:
        raise _unsupported(x, "np.repeat", "a repeat count of 0 gives an empty array")
    if axis is None:
        x, axis = _reshape_node(x, [-1]), 0
    (index,) = _axes(axis, x.ndim)
    if count == 1:
        return _copy(x)
    expanded = _unsqueeze(x, (index + 1,))
    reps = [1] * expanded.ndim
    reps[index + 1] = count
    shape = list(expanded.shape)
    shape[index + 1] = count
    tiled = _node(
        x, "Tile", [expanded.name, _ints(x, reps, "repeats")], "tile", tuple(shape), x.dtype
    )
    length = x.shape[index]
    merged = -1 if length is None else length * count
    dims = [*x.shape[:index], merged, *x.shape[index + 1 :]]
    return _reshape_node(tiled, dims)


def _tile(A: Any, reps: Any) -> TracedArray:
    x = _lift(_find_ref(A), A)
    reps = [int(reps)] if _is_int(reps) else [int(r) for r in reps]
    if any(r < 0 for r in reps):
        raise ValueError("negative dimensions are not allowed")
    if len(reps) > x.ndim:
        x = _unsqueeze(x, tuple(range(len(reps) - x.ndim)))
    reps = [1] * (x.ndim - len(reps)) + reps
    if all(r == 1 for r in reps):
        return _copy(x)
    shape = tuple(None if d is None else d * r for d, r in zip(x.shape, reps, strict=True))
    return _node(x, "Tile", [x.name, _ints(x, reps, "repeats")], "tile", shape, x.dtype)


def _pad(array: Any, pad_width: Any, mode: str = "constant", **kwargs: Any) -> TracedArray:
    x = _lift(_find_ref(array), array)
    if mode != "constant" or set(kwargs) - {"constant_values"}:
        raise _unsupported(
            x,
            f"np.pad(..., mode={mode!r})",
            "only mode='constant' with a scalar constant_values is supported",
        )
    value = np.asarray(kwargs.get("constant_values", 0))
    if value.size != 1:
        raise _unsupported(
            x, "np.pad(..., constant_values=...)", "only a scalar fill value is supported"
        )
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (x.ndim, 2))
    if (widths < 0).any():
        raise ValueError("index can't contain negative values")
    pads = [*widths[:, 0].tolist(), *widths[:, 1].tolist()]
    fill = _constant(x, value.reshape(()).astype(x.dtype), "pad_value")
    shape = tuple(
        None if d is None else d + int(w.sum()) for d, w in zip(x.shape, widths, strict=True)
    )
    return _node(
        x, "Pad", [x.name, _ints(x, pads, "pads"), fill], "pad", shape, x.dtype, mode="constant"
    )


# Selection.


# The types onnxruntime has no Where kernel for, and the type each is chosen in instead.
_WHERE_CARRIERS = {"int16": "int32", "uint16": "int32", "uint64": "int64", "bool": "uint8"}


def _where(condition: Any, x: Any = _UNSET, y: Any = _UNSET, /) -> TracedArray:
    ref = _find_ref([condition, x, y])
    if x is _UNSET or y is _UNSET:
        raise _unsupported(
            ref,
            "np.where(condition)",
            "the one-argument form (np.nonzero) gives a shape that depends on the values",
        )
    dtype = _result_type(x, y)
    args = [_cast(_lift(ref, condition), bool), _lift(ref, x, dtype), _lift(ref, y, dtype)]
    carrier = _WHERE_CARRIERS.get(np.dtype(dtype).name)
    if carrier is None:
        return _elementwise("Where", args, dtype)
    # onnxruntime has no Where kernel for this type: chosen in one that holds its values
    # (or, for uint64, its bits: the casts wrap both ways), then cast back
    chosen = _elementwise("Where", [args[0], *(_cast(a, carrier) for a in args[1:])], carrier)
    return _cast(chosen, dtype)


def _clip(
    a: Any,
    a_min: Any = _UNSET,
    a_max: Any = _UNSET,
    out: Any = None,
    *,
    min: Any = _UNSET,
    max: Any = _UNSET,
    **kwargs: Any,
) -> TracedArray:
    ref = _find_ref([a, a_min, a_max, min, max])
    low = min if a_min is _UNSET else a_min
    high = max if a_max is _UNSET else a_max
    low, high = (None if v is _UNSET else v for v in (low, high))
    bounds = [v for v in (low, high) if v is not None]
    dtype = _result_type(a, *bounds)
    x = _lift(ref, a, dtype)
    scalars = all(not isinstance(v, TracedArray) and np.ndim(v) == 0 for v in bounds)
    if scalars and dtype.kind in "fiu":
        inputs = [x.name] + [
            "" if v is None else _constant(x, np.asarray(v, dtype), "clip_bound")
            for v in (low, high)
        ]
        return _node(x, "Clip", inputs, "clip", x.shape, dtype)
    result = x if low is None else np.maximum(x, _lift(ref, low, dtype))
    return result if high is None else np.minimum(result, _lift(ref, high, dtype))


def _take(
    a: Any, indices: Any, axis: Any = None, out: Any = None, mode: str = "raise"
) -> TracedArray:
    ref = _find_ref([a, indices])
    x = _lift(ref, a)
    if axis is None:
        x, axis = _reshape_node(x, [-1]), 0
    (index,) = _axes(axis, x.ndim)
    return _gather(x, indices, index)


def _gather(x: TracedArray, indices: Any, axis: int) -> TracedArray:
    if isinstance(indices, TracedArray):
        idx = _lift(x, indices)
        if idx.dtype.kind not in "iu":
            raise IndexError("arrays used as indices must be of integer type")
        idx = idx if idx.dtype in (np.int32, np.int64) else _cast(idx, np.int64)
    else:
        values = np.asarray(indices)
        if values.dtype.kind not in "iu" and values.size:
            raise IndexError("arrays used as indices must be of integer type")
        values = values.astype(np.int64)
        length = x.shape[axis]
        if (
            length is not None
            and values.size
            and (values.max() >= length or values.min() < -length)
        ):
            raise IndexError(f"index out of bounds for axis {axis} with size {length}")
        idx = _lift(x, values)
    shape = x.shape[:axis] + idx.shape + x.shape[axis + 1 :]
    return _node(x, "Gather", [x, idx], "gather", shape, x.dtype, axis=axis)


def _dot(a: Any, b: Any, out: Any = None) -> TracedArray:
    ref = _find_ref([a, b])
    dtype = _result_type(a, b)
    x, y = _lift(ref, a, dtype), _lift(ref, b, dtype)
    if x.ndim == 0 or y.ndim == 0:
        return np.multiply(x, y)
    if y.ndim <= 2:
        return np.matmul(x, y)
    perm = list(range(y.ndim))
    perm = [perm.pop(-2), *perm]
    flat = _reshape_node(_transpose_node(y, perm), [y.shape[-2], -1])
    product = np.matmul(x, flat)
    return _reshape_node(product, [*x.shape[:-1], *y.shape[:-2], y.shape[-1]])


def _norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> TracedArray:
    ref = _find_ref(x)
    array = _lift(ref, x)
    if array.dtype.kind not in "fc":
        array = _cast(array, float)
    vector = axis is None or _is_int(axis) or len(tuple(axis)) == 1
    if ord is not None and not (ord == 2 and vector) and ord != "fro":
        raise _unsupported(
            ref,
            f"np.linalg.norm(..., ord={ord!r})",
            "only the 2-norm and the Frobenius norm are supported",
        )
    return np.sqrt(np.sum(array * array, axis=axis, keepdims=keepdims))


def _round(a: Any, decimals: int = 0, out: Any = None) -> TracedArray:
    x = _lift(_find_ref(a), a)
    if x.dtype.kind in "biu" and decimals >= 0:
        return _copy(x)
    if decimals == 0:
        return np.rint(x)
    if decimals > 0:
        return np.rint(x * 10.0**decimals) / 10.0**decimals
    return np.rint(x / 10.0**-decimals) * 10.0**-decimals


def _filled(a: Any, fill_value: Any, dtype: Any, shape: Any, label: str) -> TracedArray:
    x = _lift(_find_ref(a), a)
    if shape is not None:
        raise _unsupported(x, f"np.{label}(..., shape=...)", "the shape must be the array's")
    target = x.dtype if dtype is None else np.dtype(dtype)
    value = numpy_helper.from_array(np.asarray([fill_value], dtype=target))
    shape_name = x.builder.op("Shape", [x.name], f"{x.prefix}_shape")
    return _node(x, "ConstantOfShape", [shape_name], label, x.shape, target, value=value)


def _zeros_like(
    a: Any,
    dtype: Any = None,
    order: str = "K",
    subok: bool = True,
    shape: Any = None,
    *,
    device: Any = None,
) -> TracedArray:
    return _filled(a, 0, dtype, shape, "zeros_like")


def _ones_like(
    a: Any,
    dtype: Any = None,
    order: str = "K",
    subok: bool = True,
    shape: Any = None,
    *,
    device: Any = None,
) -> TracedArray:
    return _filled(a, 1, dtype, shape, "ones_like")


def _full_like(
    a: Any,
    fill_value: Any,
    dtype: Any = None,
    order: str = "K",
    subok: bool = True,
    shape: Any = None,
    *,
    device: Any = None,
) -> TracedArray:
    return _filled(a, fill_value, dtype, shape, "full_like")


def _shape(a: Any) -> Shape:
    return a.shape


def _ndim(a: Any) -> int:
    return a.ndim


def _size(a: Any, axis: Any = None) -> int | None:
    return a.size if axis is None else a.shape[axis]


def _np_copy(a: Any, order: str = "K", subok: bool = False) -> TracedArray:
    return _copy(_lift(_find_ref(a), a))


# Indexing.


def _index_kind(entry: Any) -> str:
    if entry is None:
        return "new"
    if entry is Ellipsis:
        return "ellipsis"
    if isinstance(entry, slice):
        return "slice"
    if isinstance(entry, (bool, np.bool_)):
        return "mask"
    if _is_int(entry):
        return "int"
    dtype = entry.dtype if isinstance(entry, (TracedArray, np.ndarray)) else np.asarray(entry).dtype
    if dtype.kind == "b":
        return "mask"
    if dtype.kind in "iu" or (isinstance(entry, list) and not entry):
        return "array"
    raise IndexError(
        "only integers, slices (`:`), ellipsis (`...`), numpy.newaxis (`None`) "
        "and integer or boolean arrays are valid indices"
    )


def _expand_key(x: TracedArray, key: Any) -> list[tuple[str, Any]]:
    entries = [(_index_kind(k), k) for k in (key if isinstance(key, tuple) else (key,))]
    kinds = [kind for kind, _ in entries]
    if "mask" in kinds:
        raise _unsupported(
            x, "boolean-mask indexing", "the result's shape depends on the values; use np.where"
        )
    if kinds.count("ellipsis") > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if kinds.count("array") > 1 or ("array" in kinds and "int" in kinds):
        raise _unsupported(
            x,
            "indexing with several integer or array indices",
            "only one integer-array index (with slices) is supported",
        )
    consumed = sum(kind in ("slice", "int", "array") for kind in kinds)
    if consumed > x.ndim:
        raise IndexError(
            f"too many indices for array: array is {x.ndim}-dimensional, but "
            f"{consumed} were indexed"
        )
    fill = [("slice", slice(None))] * (x.ndim - consumed)
    if "ellipsis" in kinds:
        at = kinds.index("ellipsis")
        return entries[:at] + fill + entries[at + 1 :]
    return entries + fill


def _slice_bounds(entry: slice, dim: int | None) -> tuple[int, int, int, int | None]:
    """ONNX Slice's start, end and step for ``entry``, and the static size.

    On a static dimension the bounds are Python's own (``slice.indices``); on a dynamic
    one ONNX's clamping matches Python's except for a negative step starting before the
    first element."""
    step = 1 if entry.step is None else operator.index(entry.step)
    if step == 0:
        raise ValueError("slice step cannot be zero")
    if dim is not None:
        start, stop, step = entry.indices(dim)
        size = len(range(start, stop, step))
        if size == 0:
            return 0, 0, 1, 0
        return start, (_INT64_MIN if stop < 0 else stop), step, size
    start = entry.start if entry.start is None else operator.index(entry.start)
    stop = entry.stop if entry.stop is None else operator.index(entry.stop)
    if start is None:
        start = 0 if step > 0 else _INT64_MAX
    if stop is None:
        stop = _INT64_MAX if step > 0 else _INT64_MIN
    return start, stop, step, None


def _getitem(x: TracedArray, key: Any) -> TracedArray:
    _check_fresh(x)
    slices: list[tuple[int, int, int, int]] = []
    shape = list(x.shape)
    squeeze, unsqueeze = [], []
    gather: tuple[int, Any] | None = None
    axis = position = 0
    for kind, entry in _expand_key(x, key):
        if kind == "new":
            unsqueeze.append(position)
        elif kind == "slice" and entry not in (slice(None), slice(None, None, 1)):
            start, stop, step, shape[axis] = _slice_bounds(entry, x.shape[axis])
            slices.append((axis, start, stop, step))
        elif kind == "int":
            slices.append((axis, *_int_bounds(operator.index(entry), x.shape[axis], axis)))
            shape[axis] = 1
            squeeze.append(axis)
        elif kind == "array":
            gather = (axis, entry)
            position += np.ndim(entry) - 1
        position += kind != "int"
        axis += kind != "new"
    result = _slice_node(x, slices, tuple(shape)) if slices else x
    if gather is not None:
        return _unsqueeze(_gather(result, gather[1], gather[0]), unsqueeze)
    result = _unsqueeze(_squeeze_node(result, squeeze), unsqueeze)
    return _view(x, _copy(x) if result is x else result)


def _int_bounds(index: int, dim: int | None, axis: int) -> tuple[int, int, int]:
    if dim is not None and not -dim <= index < dim:
        raise IndexError(f"index {index} is out of bounds for axis {axis} with size {dim}")
    return index, (_INT64_MAX if index == -1 else index + 1), 1


def _slice_node(
    x: TracedArray, slices: list[tuple[int, int, int, int]], shape: Shape
) -> TracedArray:
    axes, starts, stops, steps = zip(*slices, strict=True)
    inputs = [
        x.name,
        _ints(x, starts, "starts"),
        _ints(x, stops, "ends"),
        _ints(x, axes, "axes"),
        _ints(x, steps, "steps"),
    ]
    return _node(x, "Slice", inputs, "slice", shape, x.dtype)


_FUNCTIONS: dict[Callable, Callable[..., Any]] = {
    np.sum: _sum,
    np.prod: _prod,
    np.mean: _mean,
    np.max: _extreme("ReduceMax", "max", _any),
    np.amax: _extreme("ReduceMax", "max", _any),
    np.min: _extreme("ReduceMin", "min", _all),
    np.amin: _extreme("ReduceMin", "min", _all),
    np.any: _any,
    np.all: _all,
    np.var: _var,
    np.std: _std,
    np.argmax: _arg("ArgMax", "argmax"),
    np.argmin: _arg("ArgMin", "argmin"),
    np.cumsum: _cumulative(np.cumsum, "cumsum", _cumsum_node),
    np.cumprod: _cumulative(np.cumprod, "cumprod", _cumprod_nodes),
    np.reshape: _reshape,
    np.ravel: _ravel,
    np.transpose: _transpose,
    np.swapaxes: _swapaxes,
    np.moveaxis: _moveaxis,
    np.expand_dims: _expand_dims,
    np.squeeze: _squeeze,
    np.broadcast_to: _broadcast_to,
    np.flip: _flip,
    np.concatenate: _concatenate,
    np.stack: _stack,
    np.split: _split,
    np.repeat: _repeat,
    np.tile: _tile,
    np.pad: _pad,
    np.where: _where,
    np.clip: _clip,
    np.take: _take,
    np.dot: _dot,
    np.linalg.norm: _norm,
    np.round: _round,
    np.around: _round,
    np.zeros_like: _zeros_like,
    np.ones_like: _ones_like,
    np.full_like: _full_like,
    np.empty_like: _zeros_like,
    np.shape: _shape,
    np.ndim: _ndim,
    np.size: _size,
    np.copy: _np_copy,
}
if hasattr(np, "astype"):
    _FUNCTIONS[np.astype] = _astype

_UFUNC_REDUCE: dict[np.ufunc, Callable[..., Any]] = {
    np.add: _sum,
    np.multiply: _prod,
    np.maximum: _FUNCTIONS[np.max],
    np.minimum: _FUNCTIONS[np.min],
    np.logical_and: _all,
    np.logical_or: _any,
}
_UFUNC_ACCUMULATE: dict[np.ufunc, Callable[..., Any]] = {
    np.add: _cumsum_via_accumulate,
    np.multiply: _cumprod_via_accumulate,
}
