"""One model version in onnxruntime: its session, tensor specs, validation and runs."""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from layerserve.service.datatypes import ORT_TO_V2, numpy_dtype, v2_datatype
from layerserve.service.errors import (
    InferenceFailed,
    InvalidInput,
    ModelLoadError,
    ModelRefusedInput,
)
from layerserve.service.model_config import ModelConfig, ResolvedConfig
from layerserve.service.recurrent_guard import (
    has_recurrent_op,
    one_row,
    refuse_declared_empty_axes,
    refuse_empty_axes,
)
from layerserve.service.row_probe import Verdict, probe

log = logging.getLogger("layerserve.service")

PROVIDER_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
WARMUP_SECONDS = 30.0
WARMUP_MAX_BYTES = 1 << 30
# Lengths tried for unknown (variable) input sizes in the warm-up run.
WARMUP_LENGTHS = (1, 4, 8, 16, 32, 64)
# NumPy's limit on dimensions (NPY_MAXDIMS): client-given shapes are checked against it
# before NumPy sees them, which would raise ValueError (a 500) for more.
MAX_RANK = 64
# The largest byte size NumPy can address (a shape with a zero dimension still needs
# its other dimensions to fit).
MAX_TENSOR_BYTES = np.iinfo(np.intp).max


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: V2 datatype and shape with -1 for variable sizes."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return numpy_dtype(self.datatype)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def _spec(node: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in node.shape)
    return TensorSpec(node.name, ORT_TO_V2.get(node.type, "BYTES"), shape)


@dataclass
class LoadedModel:
    """A loaded, warmed model version. ``run`` is thread-safe (onnxruntime's Run is)."""

    name: str
    version: str
    path: Path
    config: ResolvedConfig
    session: Any
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    providers: list[str]
    fell_back_to_cpu: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    # The graph holds an LSTM, GRU or RNN op, which aborts the process in onnxruntime on
    # an empty axis (zero rows; a GRU's zero timesteps). An empty batch runs on one row of
    # zeros instead, and the outputs are cut back to zero rows; any other empty axis is
    # refused before the graph runs (see run).
    has_recurrent_op: bool = False
    # Whether rows depend on one another, found at load by running the graph
    # (service/row_probe.py); None until then, and for a model that is not batched.
    row_verdict: Verdict | None = None

    @classmethod
    def load(cls, name: str, version: str, path: Path, config: ResolvedConfig) -> LoadedModel:
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        requested = [PROVIDER_NAMES[p] for p in config.providers]
        if "CPUExecutionProvider" not in requested:
            requested.append("CPUExecutionProvider")
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=requested)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises many kinds
            raise ModelLoadError(f"cannot load {path}: {exc}") from exc
        actual = list(session.get_providers())
        fell_back = "cuda" in config.providers and "CUDAExecutionProvider" not in actual
        if fell_back:
            message = (
                f"model '{name}' version {version} asked for the CUDA execution "
                f"provider but onnxruntime runs it on {actual}"
            )
            if not config.allow_cpu_fallback:
                raise ModelLoadError(message + "; set allow_cpu_fallback to serve on CPU")
            log.warning("%s; serving on CPU (allow_cpu_fallback)", message)
        metadata = dict(session.get_modelmeta().custom_metadata_map)
        model = cls(
            name,
            version,
            path,
            config,
            session,
            [_spec(i) for i in session.get_inputs()],
            [_spec(o) for o in session.get_outputs()],
            actual,
            fell_back,
            metadata,
        )
        model.has_recurrent_op = has_recurrent_op(path)
        if model.has_recurrent_op:
            declared = [(s.name, s.shape) for s in model.inputs]
            refuse_declared_empty_axes(name, declared, model.batched)
        model.warm_up()
        if model.batched and not model.merges_requests:
            log.warning(
                "model '%s' version %s: %s; its requests run one by one, never merged",
                name,
                version,
                model.why_unmerged(),
            )
        return model

    @property
    def batched(self) -> bool:
        return self.config.max_batch_size > 0

    @functools.cached_property
    def input_value_ranges(self) -> dict[str, tuple[int, int]]:
        """Index ranges the exporter recorded for inputs read as indices (Embedding)."""
        try:
            recorded = json.loads(self.metadata.get("input_value_ranges", "{}"))
            return {str(k): (int(v[0]), int(v[1])) for k, v in dict(recorded).items()}
        except (ValueError, TypeError, IndexError):
            return {}

    @functools.cached_property
    def batch_coupled_layers(self) -> list[str]:
        """Layers the exporter recorded as making one row's output depend on the other rows
        of its batch (tf.keras's masked GroupNormalization): the batcher runs each request
        of such a model as it came, never merged with others. An unreadable record counts
        as coupled: merging such a model would change its answers silently."""
        try:
            recorded = json.loads(self.metadata.get("batch_coupled_layers", "[]"))
            return [str(name) for name in recorded]
        except (ValueError, TypeError):
            return ["(unreadable batch_coupled_layers record)"]

    @property
    def merges_requests(self) -> bool:
        """Whether the batcher may run several requests as one batch: not when the
        exporter recorded layers that couple rows, nor unless the load's probe found the
        rows independent."""
        verdict = self.row_verdict
        return self.batched and not self.batch_coupled_layers and bool(verdict and verdict.merges)

    def why_unmerged(self) -> str:
        """Why a batched model's requests are not merged (see ``merges_requests``)."""
        layers, verdict = self.batch_coupled_layers, self.row_verdict
        depends = "one row's output depends on the other rows of its batch"
        if layers:
            return f"{depends} in layers {layers}"
        if verdict is not None and verdict.coupled:
            return f"{depends} ({verdict.reason})"
        reason = verdict.reason if verdict is not None else "not probed"
        return f"whether its rows depend on one another is unknown ({reason})"

    @property
    def mask_outputs(self) -> dict[str, str]:
        try:
            return dict(json.loads(self.metadata.get("mask_outputs", "{}")))
        except ValueError:
            return {}

    @functools.cached_property
    def value_outputs(self) -> list[str]:
        """The outputs that are not ``<output>_mask`` outputs (the model's own outputs,
        as Keras returns them)."""
        masks = set(self.mask_outputs.values())
        return [s.name for s in self.outputs if s.name not in masks]

    def warm_up(self) -> None:
        """One run on zeros (batch 1), so the first request does not pay for set-up. A
        graph that declares huge inputs, or whose run does not end (a Loop of 10**15
        steps), fails the load instead of holding a thread for ever."""
        variable = any(d < 0 for s in self.inputs for d in s.shape[1:])
        # A valid convolution over a variable length needs a minimum length: unknown
        # sizes try growing values until one runs.
        for length in WARMUP_LENGTHS if variable else WARMUP_LENGTHS[:1]:
            shapes = {
                s.name: [(1 if i == 0 else length) if d < 0 else d for i, d in enumerate(s.shape)]
                for s in self.inputs
            }
            size = sum(
                math.prod(shapes[s.name]) * np.dtype(s.dtype).itemsize
                for s in self.inputs
                if s.dtype.kind != "O"
            )
            if size > WARMUP_MAX_BYTES:
                raise ModelLoadError(
                    f"model '{self.name}' declares inputs of {size} bytes for one sample; "
                    f"expected at most {WARMUP_MAX_BYTES} (input shapes {shapes})"
                )
            try:
                self._warm_up_run(shapes)
            except _WarmUpTimeout:
                raise
            except ModelLoadError:
                if length == WARMUP_LENGTHS[-1] or not variable:
                    raise
                continue
            if self.batched and not self.batch_coupled_layers:
                loose = "CUDAExecutionProvider" in self.providers
                ranges = self.input_value_ranges
                self.row_verdict = probe(self._probe_run, self.inputs, shapes, ranges, size, loose)
            return

    def _warm_up_run(self, shapes: dict[str, list[int]]) -> None:
        feeds = {s.name: np.zeros(shapes[s.name], dtype=s.dtype) for s in self.inputs}
        try:
            self._timed_run(feeds)
        except Exception as exc:  # noqa: BLE001
            error = _WarmUpTimeout if isinstance(exc, _WarmUpTimeout) else ModelLoadError
            raise error(
                f"model '{self.name}' failed its warm-up run (batch 1, zeros, shapes "
                f"{shapes}, at most {WARMUP_SECONDS:g} s): {exc}"
            ) from exc

    def _probe_run(self, feeds: dict[str, np.ndarray], seconds: float) -> list[Any]:
        try:
            return self._timed_run(feeds, seconds)
        except _WarmUpTimeout as exc:
            raise TimeoutError(f"a probe run took over {seconds:.3g} s") from exc

    def _timed_run(self, feeds: dict[str, np.ndarray], seconds: float | None = None) -> list[Any]:
        """A load-time run, stopped after ``seconds`` (default ``WARMUP_SECONDS``; then
        _WarmUpTimeout)."""
        options = ort.RunOptions()
        limit = WARMUP_SECONDS if seconds is None else seconds
        timer = threading.Timer(limit, setattr, (options, "terminate", True))
        timer.daemon = True
        timer.start()
        try:
            return self.session.run(None, feeds, options)
        except Exception as exc:
            if options.terminate:
                raise _WarmUpTimeout(str(exc)) from exc
            raise
        finally:
            timer.cancel()

    def input_spec(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise InvalidInput(
            f"unexpected inference input '{name}' for model '{self.name}'; "
            f"expected inputs: {[s.name for s in self.inputs]}"
        )

    def output_spec(self, name: str) -> TensorSpec:
        for spec in self.outputs:
            if spec.name == name:
                return spec
        raise InvalidInput(
            f"unexpected inference output '{name}' for model '{self.name}'; "
            f"available outputs: {[s.name for s in self.outputs]}"
        )

    def check_rank(self, name: str, rank: int) -> None:
        """Refuse a client-given tensor of more dimensions than NumPy holds, before NumPy
        is asked to build it (no model input has that many)."""
        if rank <= MAX_RANK:
            return
        spec = self.input_spec(name)
        raise InvalidInput(
            f"unexpected shape for input '{name}' for model '{self.name}'. Expected rank "
            f"{len(spec.shape)} (shape {list(spec.shape)}), got rank {rank}: tensors have "
            f"at most {MAX_RANK} dimensions"
        )

    def check_datatype(self, name: str, dtype: np.dtype) -> None:
        """Input ``name``'s dtype is the model's (names the model lacks are refused by
        :meth:`validate`, with every missing and unexpected one)."""
        spec = next((s for s in self.inputs if s.name == name), None)
        if spec is not None and dtype != spec.dtype:
            raise InvalidInput(self.datatype_mismatch(name, v2_datatype(dtype), spec.datatype))

    def datatype_mismatch(self, name: str, received: str, expected: str) -> str:
        """Inference's words (and :validate's) for an input of another datatype."""
        return (
            f"inference input data-type is '{received}', model expects '{expected}' for "
            f"'{self.name}' (input '{name}')"
        )

    def check_shape(self, name: str, shape: list[int], itemsize: int) -> None:
        """A client-given shape NumPy can represent: at most ``MAX_RANK`` dimensions, and
        dimensions whose product (zeros left out) fits NumPy's address space."""
        self.check_rank(name, len(shape))
        if math.prod(d for d in shape if d) * itemsize > MAX_TENSOR_BYTES:
            raise InvalidInput(
                f"input '{name}' for model '{self.name}' has shape {shape}, whose dimensions "
                f"describe more than {MAX_TENSOR_BYTES} bytes; expected a shape like "
                f"{list(self.input_spec(name).shape)}"
            )

    def check_values(self, name: str, array: np.ndarray) -> None:
        """The values of input ``name`` the model accepts: an Embedding's input holds
        indices into its table (recorded by the exporter)."""
        if name in self.input_value_ranges:
            _check_indices(self.name, name, array, *self.input_value_ranges[name])

    def validate(self, tensors: dict[str, np.ndarray]) -> int:
        """Check names, dtypes and shapes; return the batch size (rows): 1 for a model
        served unbatched."""
        missing = [s.name for s in self.inputs if s.name not in tensors]
        if missing:
            known = {s.name for s in self.inputs}
            unexpected = [n for n in tensors if n not in known]
            extra = f"; unexpected: {unexpected}" if unexpected else ""
            raise InvalidInput(
                f"expected {len(self.inputs)} inputs but got {len(tensors)} "
                f"inputs for model '{self.name}'; missing: {missing}{extra}"
            )
        rows = None
        for name, array in tensors.items():
            spec = self.input_spec(name)
            self.check_datatype(name, array.dtype)
            if not _shape_fits(array.shape, spec.shape):
                hint = ""
                if len(array.shape) + 1 == len(spec.shape) and array.size:
                    hint = (
                        " (the model's first dimension is the batch: add it, e.g. "
                        f"shape {[1, *array.shape]})"
                    )
                raise InvalidInput(
                    f"unexpected shape for input '{name}' for model '{self.name}'. Expected "
                    f"{list(spec.shape)}, got {list(array.shape)}{hint}"
                )
            self.check_values(name, array)
            if not self.batched:
                # no batch dimension: inputs may differ in their first one (a bias beside
                # the data); the request is one inference, as Triton counts it
                rows = 1
                continue
            batch = array.shape[0] if array.ndim else 1
            if rows is not None and batch != rows:
                raise InvalidInput(
                    f"input '{name}' batch size does not match other inputs "
                    f"for '{self.name}': {batch} vs {rows}"
                )
            rows = batch
        if self.batched and rows is not None and rows > self.config.max_batch_size:
            raise InvalidInput(
                f"inference request batch-size must be <= {self.config.max_batch_size} "
                f"for '{self.name}', got {rows}: send at most {self.config.max_batch_size} "
                f"rows per request, or {self._batch_limit_hint()}"
            )
        return int(rows or 0)

    def _batch_limit_hint(self) -> str:
        """Where this model's max_batch_size comes from, so the client knows what to
        raise: the model's config.json, or the server's default."""
        model_dir = self.path.parent.parent
        try:
            from_file = ModelConfig.read(model_dir).max_batch_size is not None
        except ModelLoadError:
            from_file = True  # unreadable now: the file is where it was set
        if from_file:
            return (
                f"raise max_batch_size in the config.json of model '{self.name}' in the "
                "model repository and load the model again"
            )
        return (
            f"raise LAYERSERVE_MAX_BATCH_SIZE (the server's default; model '{self.name}' "
            "has no max_batch_size in a config.json) or set max_batch_size in its "
            "config.json"
        )

    def run(
        self, feeds: dict[str, np.ndarray], output_names: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        names = output_names or [s.name for s in self.outputs]
        # onnxruntime would store bytes elements of string tensors as their repr.
        feeds = {k: _text(v) if v.dtype.kind == "O" else v for k, v in feeds.items()}
        if self.has_recurrent_op:
            refuse_empty_axes(self.name, feeds, self.batched)
        empty = (
            self.batched
            and self.has_recurrent_op
            and any(v.shape[:1] == (0,) for v in feeds.values())
        )
        if empty:
            feeds = {k: one_row(v) for k, v in feeds.items()}
        try:
            values = self.session.run(names, feeds)
        except InvalidArgument as exc:
            raise ModelRefusedInput(
                f"model '{self.name}' refused the input values: {_first_line(exc)}"
            ) from exc
        except Exception as exc:  # noqa: BLE001
            raise InferenceFailed(f"model '{self.name}' failed to run: {exc}") from exc
        if empty:
            values = [v[:0] for v in values]
        return dict(zip(names, values, strict=True))


class _WarmUpTimeout(ModelLoadError):
    """The warm-up run was stopped after ``WARMUP_SECONDS``: no other length is tried."""


def _check_indices(model: str, name: str, array: np.ndarray, low: int, high: int) -> None:
    """Embedding inputs: every value, truncated toward zero as Keras casts it, must be an
    index in ``[low, high)``; onnxruntime would fail (or on a GPU return zeros)."""
    if array.size == 0 or array.dtype.kind not in "iuf":
        return
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise InvalidInput(
                f"input '{name}' of model '{model}' holds indices: expected finite values. "
                "Received: NaN or infinity"
            )
        array = np.trunc(array)
    smallest, largest = array.min(), array.max()
    if smallest < low or largest >= high:
        raise InvalidInput(
            f"input '{name}' of model '{model}' holds indices into an Embedding of {high} "
            f"rows: expected values in [{low}, {high}). Received: values from "
            f"{smallest.item():g} to {largest.item():g}"
        )


def _text(array: np.ndarray) -> np.ndarray:
    if not any(isinstance(v, bytes) for v in array.reshape(-1)):
        return array
    try:
        decoded = [v.decode("utf-8") if isinstance(v, bytes) else v for v in array.reshape(-1)]
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"string input elements must be UTF-8 text: {exc}") from exc
    return np.array(decoded, dtype=object).reshape(array.shape)


def _shape_fits(shape: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    return len(shape) == len(expected) and all(
        e < 0 or e == s for s, e in zip(shape, expected, strict=True)
    )


_NODE_FAILED = re.compile(r"running (\w+) node\. Name:'([^']*)' Status Message: (.*)")


def _first_line(error: Exception) -> str:
    """onnxruntime's message without its prefix and log noise, naming the node that
    failed where onnxruntime does (a check the exporter placed is named for what it
    checks, e.g. ``<layer>_needs_a_timestep``)."""
    text = str(error).split("\n", 1)[0]
    failed = _NODE_FAILED.search(text)
    if failed is not None:
        op, node, message = failed.groups()
        return f"{message} (at {op} node '{node}')"
    return text.split("Status Message: ", 1)[-1]
