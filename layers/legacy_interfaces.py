"""Keras 1 argument names that Keras 2.2 still accepts, converted as Keras 2.2 does.

Keras 2.2's ``keras/legacy/interfaces.py`` renames Keras 1 keywords (``Dense(output_dim=)``,
``Conv2D(nb_filter=, border_mode=)``, ``Dropout(p=)``...), converts some values
(``dim_ordering='th'``, ``nb_row``/``nb_col`` into a kernel size), warns
"Update your ... call to the Keras 2 API", and raises TypeError when both the old and the
new name are given. tf.keras and Keras 3 dropped all of this, so the conversion applies
under Keras 2.2 semantics only (the default of models built in code); elsewhere the old
names are unknown arguments, as in those Kerases.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from layerserve.errors import UnknownArgumentError
from layerserve.serialization import is_tf_keras_file, semantics_version

Arguments = tuple[tuple[Any, ...], dict[str, Any]]
Preprocessor = Callable[[tuple[Any, ...], dict[str, Any]], Arguments]

_DIM_ORDERING = {"dim_ordering": {"tf": "channels_last", "th": "channels_first", "default": None}}
_WEIGHT_OPTIONS = (
    ("init", "kernel_initializer"),
    ("W_regularizer", "kernel_regularizer"),
    ("b_regularizer", "bias_regularizer"),
    ("W_constraint", "kernel_constraint"),
    ("b_constraint", "bias_constraint"),
    ("bias", "use_bias"),
)


@dataclass(frozen=True)
class LegacyInterface:
    conversions: tuple[tuple[str, str], ...] = ()
    values: dict[str, dict[Any, Any]] = field(default_factory=dict)
    preprocess: Preprocessor | None = None

    def convert(self, class_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Arguments:
        converted = False
        if self.preprocess is not None:
            before = (args, dict(kwargs))
            args, kwargs = self.preprocess(args, kwargs)
            converted = before != (args, kwargs)
        for key, table in self.values.items():
            if key in kwargs and _hashable(kwargs[key]) and kwargs[key] in table:
                kwargs[key] = table[kwargs[key]]
        for old, new in self.conversions:
            if old in kwargs:
                if new in kwargs:
                    raise UnknownArgumentError(
                        f"For the `{new}` argument, the layer received both the legacy "
                        f"keyword argument `{old}` and the Keras 2 keyword argument `{new}`. "
                        f"Stick to the latter! Received: {old}={kwargs[old]!r}, "
                        f"{new}={kwargs[new]!r}"
                    )
                kwargs[new] = kwargs.pop(old)
                converted = True
        if converted:
            shown = ", ".join(
                [*(repr(a) for a in args[1:]), *(f"{k}={v!r}" for k, v in kwargs.items())]
            )
            warnings.warn(
                f"Update your `{class_name}` call to the Keras 2 API: `{class_name}({shown})`",
                UserWarning,
                stacklevel=4,
            )
        return args, kwargs


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _input_dim_to_shape(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Arguments:
    """Keras 1 ``input_dim`` (and ``input_length``) of sequence layers -> ``input_shape``."""
    if "input_dim" in kwargs:
        kwargs["input_shape"] = (kwargs.pop("input_length", None), kwargs.pop("input_dim"))
    return args, kwargs


def _recurrent(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Arguments:
    if "forget_bias_init" in kwargs:
        if kwargs.pop("forget_bias_init") == "one":
            kwargs["unit_forget_bias"] = True
        else:
            warnings.warn(
                "The `forget_bias_init` argument has been ignored. Use "
                "`unit_forget_bias=True` instead to initialize with ones.",
                UserWarning,
                stacklevel=5,
            )
    return _input_dim_to_shape(args, kwargs)


def _kernel_from_positions(rank: int) -> Preprocessor:
    """``nb_row=``/``nb_col=`` (``kernel_dim1..3`` for 3D) spell the kernel size in Keras
    1, after a first positional size or alone. ``args`` starts with the layer itself.

    Keras 2.2 also read ``Conv2D(32, 3, 3)`` as a 3x3 kernel; layerserve reads positional
    arguments by the documented signature (strides 3), as its README states."""
    names = ("nb_row", "nb_col") if rank == 2 else ("kernel_dim1", "kernel_dim2", "kernel_dim3")

    def preprocess(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Arguments:
        if not any(name in kwargs for name in names):
            return args, kwargs
        if len(args) == 3 and isinstance(args[2], int) and all(n in kwargs for n in names[1:]):
            return (*args[:2], (args[2], *(kwargs.pop(n) for n in names[1:]))), kwargs
        if len(args) <= 2 and all(name in kwargs for name in names):
            kwargs["kernel_size"] = tuple(kwargs.pop(name) for name in names)
        return args, kwargs

    return preprocess


def _deconv2d(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Arguments:
    """Keras 1 ``Deconvolution2D`` took the output shape, which Keras 2 computes."""
    kwargs.pop("output_shape", None)
    return _kernel_from_positions(2)(args, kwargs)


def _separable2d(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Arguments:
    if "init" in kwargs:
        init = kwargs.pop("init")
        kwargs["depthwise_initializer"] = kwargs["pointwise_initializer"] = init
    return _kernel_from_positions(2)(args, kwargs)


def _embedding(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Arguments:
    if "dropout" in kwargs:
        kwargs.pop("dropout")
        warnings.warn(
            "The `dropout` argument is no longer support in `Embedding`. You can apply a "
            "`keras.layers.SpatialDropout1D` layer right after the `Embedding` layer to get "
            "the same behavior.",
            UserWarning,
            stacklevel=5,
        )
    return args, kwargs


def _batch_normalization(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Arguments:
    if "mode" in kwargs and kwargs.pop("mode") != 0:
        raise UnknownArgumentError(
            "The `mode` argument of `BatchNormalization` no longer exists. `mode=1` and "
            "`mode=2` are no longer supported."
        )
    return args, kwargs


_CONV = (("nb_filter", "filters"), ("subsample", "strides"), ("border_mode", "padding"))
_POOL1D = LegacyInterface(
    (("pool_length", "pool_size"), ("stride", "strides"), ("border_mode", "padding"))
)
_POOL = LegacyInterface(
    (("border_mode", "padding"), ("dim_ordering", "data_format")), _DIM_ORDERING
)
_GLOBAL_POOL = LegacyInterface((("dim_ordering", "data_format"),), _DIM_ORDERING)
_CONV_ND = {
    rank: LegacyInterface(
        (*_CONV, ("dim_ordering", "data_format"), *_WEIGHT_OPTIONS),
        _DIM_ORDERING,
        _kernel_from_positions(rank),
    )
    for rank in (2, 3)
}

# Keras 1 names of the recurrent layers' arguments (Keras 2.2 legacy_recurrent_support).
_RECURRENT = LegacyInterface(
    (
        ("output_dim", "units"),
        ("init", "kernel_initializer"),
        ("inner_init", "recurrent_initializer"),
        ("inner_activation", "recurrent_activation"),
        ("W_regularizer", "kernel_regularizer"),
        ("b_regularizer", "bias_regularizer"),
        ("U_regularizer", "recurrent_regularizer"),
        ("dropout_W", "dropout"),
        ("dropout_U", "recurrent_dropout"),
        ("consume_less", "implementation"),
    ),
    {"consume_less": {"cpu": 0, "mem": 1, "gpu": 2}},
    _recurrent,
)

INTERFACES: dict[str, LegacyInterface] = {
    "Dense": LegacyInterface((("output_dim", "units"), *_WEIGHT_OPTIONS)),
    "Dropout": LegacyInterface((("p", "rate"),)),
    "SpatialDropout1D": LegacyInterface((("p", "rate"),)),
    "SpatialDropout2D": LegacyInterface(
        (("p", "rate"), ("dim_ordering", "data_format")), _DIM_ORDERING
    ),
    "SpatialDropout3D": LegacyInterface(
        (("p", "rate"), ("dim_ordering", "data_format")), _DIM_ORDERING
    ),
    "Embedding": LegacyInterface(
        (
            ("init", "embeddings_initializer"),
            ("W_regularizer", "embeddings_regularizer"),
            ("W_constraint", "embeddings_constraint"),
        ),
        preprocess=_embedding,
    ),
    "Conv1D": LegacyInterface(
        (
            ("nb_filter", "filters"),
            ("filter_length", "kernel_size"),
            ("subsample_length", "strides"),
            ("border_mode", "padding"),
            *_WEIGHT_OPTIONS,
        ),
        preprocess=_input_dim_to_shape,
    ),
    "Conv2D": _CONV_ND[2],
    "Conv3D": _CONV_ND[3],
    "Conv2DTranspose": LegacyInterface(
        (*_CONV, ("dim_ordering", "data_format"), *_WEIGHT_OPTIONS), _DIM_ORDERING, _deconv2d
    ),
    "SeparableConv2D": LegacyInterface(
        (
            *_CONV,
            ("dim_ordering", "data_format"),
            ("b_regularizer", "bias_regularizer"),
            ("b_constraint", "bias_constraint"),
            ("bias", "use_bias"),
        ),
        _DIM_ORDERING,
        _separable2d,
    ),
    "PReLU": LegacyInterface((("init", "alpha_initializer"),)),
    "GaussianNoise": LegacyInterface((("sigma", "stddev"),)),
    "GaussianDropout": LegacyInterface((("p", "rate"),)),
    "BatchNormalization": LegacyInterface(
        (("beta_init", "beta_initializer"), ("gamma_init", "gamma_initializer")),
        preprocess=_batch_normalization,
    ),
    "MaxPooling1D": _POOL1D,
    "AveragePooling1D": _POOL1D,
    "MaxPooling2D": _POOL,
    "AveragePooling2D": _POOL,
    "MaxPooling3D": _POOL,
    "AveragePooling3D": _POOL,
    "GlobalMaxPooling2D": _GLOBAL_POOL,
    "GlobalAveragePooling2D": _GLOBAL_POOL,
    "GlobalMaxPooling3D": _GLOBAL_POOL,
    "GlobalAveragePooling3D": _GLOBAL_POOL,
    # Keras 2.2 converts the same Keras 1 names for every recurrent layer.
    "SimpleRNN": _RECURRENT,
    "GRU": _RECURRENT,
    "LSTM": _RECURRENT,
}


def legacy_init(class_name: str, init: Callable[..., None]) -> Callable[..., None]:
    """``init`` converting Keras 1 arguments first, under Keras 2.2 semantics."""
    interface = INTERFACES[class_name]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        if semantics_version() < (2, 4, 0) and not is_tf_keras_file():
            converted, kwargs = interface.convert(class_name, (self, *args), kwargs)
            args = converted[1:]
        init(self, *args, **kwargs)

    __init__.__doc__ = init.__doc__
    __init__.__wrapped__ = init  # type: ignore[attr-defined]
    return __init__
