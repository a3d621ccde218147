"""Keras 1 argument names that Keras 2.2 still accepted map as Keras 2.2 mapped them
(keras/legacy/interfaces.py of 2.2.4), with its warning; tf.keras and Keras 3 refuse them."""

from __future__ import annotations

import warnings

import pytest

from layerserve import layers as L
from layerserve.errors import UnknownArgumentError
from layerserve.serialization import keras_semantics

# (class, Keras 1 spelling, the Keras 2 spelling it means)
CASES = {
    "dense": (L.Dense, {"output_dim": 3, "init": "zeros", "bias": False,
                        "W_regularizer": "l2", "b_constraint": "non_neg"},
              {"units": 3, "kernel_initializer": "zeros", "use_bias": False,
               "kernel_regularizer": "l2", "bias_constraint": "non_neg"}),
    "dropout": (L.Dropout, {"p": 0.25}, {"rate": 0.25}),
    "spatial_dropout2d": (L.SpatialDropout2D, {"p": 0.1, "dim_ordering": "th"},
                          {"rate": 0.1, "data_format": "channels_first"}),
    "embedding": (L.Embedding, {"input_dim": 9, "output_dim": 4, "init": "ones",
                                "W_regularizer": "l1"},
                  {"input_dim": 9, "output_dim": 4, "embeddings_initializer": "ones",
                   "embeddings_regularizer": "l1"}),
    "conv1d": (L.Conv1D, {"nb_filter": 4, "filter_length": 3, "subsample_length": 2,
                          "border_mode": "same", "input_dim": 5, "input_length": 7},
               {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same",
                "input_shape": (7, 5)}),
    "conv2d": (L.Conv2D, {"nb_filter": 4, "nb_row": 3, "nb_col": 2, "subsample": (2, 2),
                          "border_mode": "same", "dim_ordering": "tf"},
               {"filters": 4, "kernel_size": (3, 2), "strides": (2, 2), "padding": "same",
                "data_format": "channels_last"}),
    "conv3d": (L.Conv3D, {"nb_filter": 2, "kernel_dim1": 1, "kernel_dim2": 2,
                          "kernel_dim3": 3, "dim_ordering": "th"},
               {"filters": 2, "kernel_size": (1, 2, 3), "data_format": "channels_first"}),
    "deconv2d": (L.Conv2DTranspose, {"nb_filter": 2, "nb_row": 3, "nb_col": 3,
                                     "output_shape": (None, 8, 8, 2)},
                 {"filters": 2, "kernel_size": (3, 3)}),
    "separable2d": (L.SeparableConv2D, {"nb_filter": 2, "nb_row": 3, "nb_col": 3,
                                        "init": "ones"},
                    {"filters": 2, "kernel_size": (3, 3), "depthwise_initializer": "ones",
                     "pointwise_initializer": "ones"}),
    "prelu": (L.PReLU, {"init": "ones"}, {"alpha_initializer": "ones"}),
    "gaussian_noise": (L.GaussianNoise, {"sigma": 0.3}, {"stddev": 0.3}),
    "gaussian_dropout": (L.GaussianDropout, {"p": 0.3}, {"rate": 0.3}),
    "batch_normalization": (L.BatchNormalization, {"beta_init": "ones", "gamma_init": "zeros",
                                                   "mode": 0},
                            {"beta_initializer": "ones", "gamma_initializer": "zeros"}),
    "max_pooling1d": (L.MaxPooling1D, {"pool_length": 3, "stride": 1, "border_mode": "same"},
                      {"pool_size": 3, "strides": 1, "padding": "same"}),
    "average_pooling2d": (L.AveragePooling2D, {"border_mode": "same", "dim_ordering": "th"},
                          {"padding": "same", "data_format": "channels_first"}),
    "global_max_pooling3d": (L.GlobalMaxPooling3D, {"dim_ordering": "th"},
                             {"data_format": "channels_first"}),
    "lstm": (L.LSTM, {"output_dim": 4, "inner_init": "zeros", "inner_activation": "sigmoid",
                      "U_regularizer": "l2", "dropout_W": 0.1, "dropout_U": 0.2,
                      "consume_less": "mem", "forget_bias_init": "one"},
             {"units": 4, "recurrent_initializer": "zeros", "recurrent_activation": "sigmoid",
              "recurrent_regularizer": "l2", "dropout": 0.1, "recurrent_dropout": 0.2,
              "implementation": 1, "unit_forget_bias": True}),
    "gru": (L.GRU, {"output_dim": 3, "init": "ones", "inner_activation": "tanh",
                    "W_regularizer": "l1", "dropout_U": 0.3, "consume_less": "gpu"},
            {"units": 3, "kernel_initializer": "ones", "recurrent_activation": "tanh",
             "kernel_regularizer": "l1", "recurrent_dropout": 0.3, "implementation": 2}),
    "simple_rnn": (L.SimpleRNN, {"output_dim": 5, "inner_init": "zeros", "b_regularizer": "l2",
                                 "dropout_W": 0.5},
                   {"units": 5, "recurrent_initializer": "zeros", "bias_regularizer": "l2",
                    "dropout": 0.5}),
}  # fmt: skip


def without_name(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "name"}


@pytest.mark.parametrize("case", list(CASES))
def test_keras1_names_mean_their_keras2_arguments(case):
    cls, old, new = CASES[case]
    with pytest.warns(UserWarning, match=f"Update your `{cls.__name__}` call to the Keras 2 API"):
        legacy = cls(**old)
    assert without_name(legacy.get_config()) == without_name(cls(**new).get_config())


@pytest.mark.parametrize(
    ("build", "kernel"),
    [
        (lambda: L.Conv2D(8, 3, nb_col=5), (3, 5)),
        (lambda: L.Conv2D(8, nb_row=2, nb_col=5), (2, 5)),
        (lambda: L.Conv3D(8, 3, kernel_dim2=2, kernel_dim3=1), (3, 2, 1)),
    ],
)
def test_keras1_kernel_size_keywords(build, kernel):
    with pytest.warns(UserWarning, match="Keras 2 API"):
        assert build().kernel_size == kernel


def test_old_and_new_name_together_is_an_error():
    with pytest.raises(UnknownArgumentError, match="both the legacy keyword argument `p`"):
        L.Dropout(p=0.1, rate=0.2)


def test_removed_keras1_options():
    with pytest.raises(UnknownArgumentError, match="`mode` argument of `BatchNormalization`"):
        L.BatchNormalization(mode=2)
    with pytest.warns(UserWarning, match="`dropout` argument is no longer support"):
        L.Embedding(5, 2, dropout=0.5)


def test_keras2_calls_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L.Dense(3, activation="relu")
        L.Conv2D(4, (3, 3), strides=2)


@pytest.mark.parametrize("version", ["2.15.0", "3.15.1"])
def test_tf_keras_and_keras3_refuse_keras1_names(version):
    with keras_semantics(version), pytest.raises((UnknownArgumentError, TypeError)):
        L.Dropout(p=0.5)
    with keras_semantics(version), pytest.raises(UnknownArgumentError, match="border_mode"):
        L.MaxPooling1D(border_mode="same")
