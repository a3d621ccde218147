"""Writes the Keras 2.2.4 files of ``test_keras22_written.py``: recurrent wrappers over
masked sequences, convolutions and pooling, the core layers and the other families,
saved by multi-backend Keras 2.2.4 itself on TensorFlow and on Theano, with the inputs and
the outputs it computed.

Keras 2.2.4 runs on Python 3.7 with TensorFlow 1.15 or Theano 1.0; neither installs
beside layerserve's test dependencies, so the files are written once and kept here:

    python3.7 -m venv k22 && k22/bin/pip install keras==2.2.4 h5py==2.10.0 \\
        numpy==1.16.6 tensorflow==1.15.5 protobuf==3.20.3
    KERAS_BACKEND=tensorflow k22/bin/python tests/saving/keras22/write_fixtures.py

``KERAS_BACKEND=theano`` with ``theano==1.0.5`` and ``scipy==1.4.1`` writes the Theano
files (Theano's batched dot needs a BLAS: ``LD_LIBRARY_PATH=$L THEANO_FLAGS="blas.ldflags=
-L$L -l:libopenblasp-r0-34a18dc3.3.7.so"``, ``L`` being numpy's ``.libs`` folder); with
``keras==2.2.5`` or ``keras==2.3.1`` it writes the cases of ``OTHER_RELEASES`` into
``tensorflow-2.2.5`` or ``tensorflow-2.3.1``.
Each case is
``<backend>/<case>.h5`` (``model.save``) and ``<backend>/<case>.npz`` (``x0``, ... the
inputs; ``y0``, ... the outputs of ``model.predict``; ``m0``, ... the masks of the outputs
that carry one); the cases of ``SPLIT`` are also written as ``<case>.json``
(``model.to_json``) and ``<case>.weights.h5`` (``model.save_weights``).
"""

import os
import sys

import keras
import numpy as np
from keras import backend as K
from keras.layers import (
    GRU,
    LSTM,
    BatchNormalization,
    Bidirectional,
    Conv1D,
    Conv2D,
    Conv2DTranspose,
    Conv3D,
    Dense,
    DepthwiseConv2D,
    Flatten,
    Input,
    Masking,
    MaxPooling2D,
    SeparableConv2D,
    SimpleRNN,
    TimeDistributed,
)
from keras.models import Model, Sequential
from layer_cases import layer_cases

STEPS, FEATURES = 6, 3


def padded(seed: int, batch: int = 4) -> np.ndarray:
    """Sequences with padded steps (all-zero rows): at the end, at the start, in the
    middle, and none."""
    x = np.random.RandomState(seed).uniform(-1, 1, (batch, STEPS, FEATURES)).astype("float32")
    x[0, 4:] = 0.0
    x[1, :2] = 0.0
    x[2, 2:4] = 0.0
    return x


def masked(*layers):
    return Sequential([Masking(0.0, input_shape=(STEPS, FEATURES)), *layers])


def cases():
    """(name, model, inputs) of every file; ``test_keras22_written.py`` lists which of
    them layerserve refuses when Theano wrote them."""
    yield from recurrent_cases()
    yield from window_cases()
    yield from layer_cases()


def recurrent_cases():
    yield (
        "bidirectional-lstm-sequences-concat",
        masked(Bidirectional(LSTM(4, return_sequences=True))),
        [padded(1)],
    )
    yield (
        "bidirectional-lstm-last-sum",
        masked(Bidirectional(LSTM(4), merge_mode="sum")),
        [padded(2)],
    )
    yield (
        "bidirectional-gru-sequences-ave",
        masked(Bidirectional(GRU(3, return_sequences=True), merge_mode="ave")),
        [padded(3)],
    )
    yield "bidirectional-gru-last-mul", masked(Bidirectional(GRU(3), merge_mode="mul")), [padded(4)]
    yield (
        "bidirectional-simplernn-sequences-concat",
        masked(Bidirectional(SimpleRNN(3, return_sequences=True))),
        [padded(5)],
    )
    yield (
        "bidirectional-go-backwards-sequences",
        masked(Bidirectional(LSTM(3, return_sequences=True, go_backwards=True))),
        [padded(6)],
    )
    yield (
        "bidirectional-stacked-sequences",
        masked(
            Bidirectional(GRU(3, return_sequences=True)),
            Bidirectional(LSTM(2, return_sequences=True)),
            TimeDistributed(Dense(2)),
        ),
        [padded(7)],
    )

    inputs = Input((STEPS, FEATURES))
    outputs = Bidirectional(LSTM(3, return_sequences=True, return_state=True), merge_mode=None)(
        Masking(0.0)(inputs)
    )
    yield "bidirectional-lstm-states-no-merge", Model(inputs, outputs), [padded(8)]

    rng = np.random.RandomState(9)
    initial = [rng.uniform(-1, 1, (4, 2)).astype("float32") for _ in range(4)]
    for name, masking in (("masked", True), ("unmasked", False)):
        inputs = Input((STEPS, FEATURES))
        states = [Input((2,)) for _ in range(4)]
        x = Masking(0.0)(inputs) if masking else inputs
        outputs = Bidirectional(LSTM(2, return_sequences=True))(x, initial_state=states)
        yield (
            "bidirectional-lstm-initial-state-" + name,
            Model([inputs, *states], outputs),
            [
                padded(9),
                *initial,
            ],
        )

    yield (
        "timedistributed-dense-masked-lstm",
        masked(TimeDistributed(Dense(4, activation="tanh")), LSTM(3, return_sequences=True)),
        [padded(10)],
    )
    yield (
        "timedistributed-dense",
        Sequential([TimeDistributed(Dense(2), input_shape=(STEPS, FEATURES))]),
        [padded(11)],
    )


def image(seed: int, shape: tuple) -> np.ndarray:
    return np.random.RandomState(seed).uniform(-1, 1, (2, *shape)).astype("float32")


def window_cases():
    """Convolutions (whose kernels Theano stores flipped) and pooling."""
    yield (
        "conv1d-valid-strided",
        Sequential([Conv1D(3, 3, strides=2, input_shape=(7, 2))]),
        [image(20, (7, 2))],
    )
    yield (
        "conv1d-causal",
        Sequential([Conv1D(2, 3, padding="causal", input_shape=(7, 2))]),
        [image(21, (7, 2))],
    )
    yield (
        "conv2d-valid",
        Sequential([Conv2D(3, (2, 3), input_shape=(5, 6, 2))]),
        [image(22, (5, 6, 2))],
    )
    yield (
        "conv2d-same-odd",
        Sequential([Conv2D(3, 3, padding="same", activation="relu", input_shape=(5, 6, 2))]),
        [image(23, (5, 6, 2))],
    )
    yield (
        "conv2d-same-dilated",
        Sequential([Conv2D(2, 3, dilation_rate=2, padding="same", input_shape=(7, 7, 2))]),
        [image(24, (7, 7, 2))],
    )
    yield (
        "conv2d-channels-first",
        Sequential([Conv2D(2, (3, 2), data_format="channels_first", input_shape=(2, 6, 7))]),
        [image(25, (2, 6, 7))],
    )
    yield (
        "conv3d-valid",
        Sequential([Conv3D(2, 2, input_shape=(4, 4, 4, 2))]),
        [image(26, (4, 4, 4, 2))],
    )
    yield (
        "conv2dtranspose-valid-strided",
        Sequential([Conv2DTranspose(2, (3, 2), strides=2, input_shape=(4, 4, 2))]),
        [image(27, (4, 4, 2))],
    )
    yield (
        "conv2dtranspose-same-odd",
        Sequential([Conv2DTranspose(2, 3, padding="same", input_shape=(4, 5, 2))]),
        [image(28, (4, 5, 2))],
    )
    yield (
        "separableconv2d-valid",
        Sequential([SeparableConv2D(3, (3, 2), input_shape=(5, 5, 2))]),
        [image(29, (5, 5, 2))],
    )
    yield (
        "depthwiseconv2d-valid",
        Sequential([DepthwiseConv2D((3, 2), input_shape=(5, 5, 2))]),
        [image(30, (5, 5, 2))],
    )
    yield (
        "maxpooling2d-valid",
        Sequential([MaxPooling2D(2, input_shape=(5, 6, 2)), Conv2D(2, 2)]),
        [image(31, (5, 6, 2))],
    )
    yield (
        "timedistributed-conv2d",
        Sequential([TimeDistributed(Conv2D(2, 3), input_shape=(3, 5, 5, 2))]),
        [image(32, (3, 5, 5, 2))],
    )
    inner = Sequential([Conv2D(2, 3, input_shape=(5, 5, 2)), Conv2D(1, 2)])
    inputs = Input((5, 5, 2))
    yield "nested-model-conv2d", Model(inputs, Flatten()(inner(inputs))), [image(33, (5, 5, 2))]
    yield (
        "conv2d-same-even",
        Sequential([Conv2D(2, (2, 3), padding="same", input_shape=(5, 6, 2))]),
        [image(34, (5, 6, 2))],
    )
    yield (
        "maxpooling2d-same-strided",
        Sequential(
            [Conv2D(2, 3, input_shape=(7, 7, 2)), MaxPooling2D(3, strides=2, padding="same")]
        ),
        [image(35, (7, 7, 2))],
    )


# written also as JSON and a weights-only file, whose root records the backend
SPLIT = ("conv2d-valid", "conv1d-valid-strided")


# Written by Keras 2.2.5 and 2.3.1 too, into ``<backend>-<version>``: where they differ
# from 2.2.4 (the masked steps before the first valid one, given initial states) or from
# tf.keras (Bidirectional's masked steps, which tf.keras zeroes and they do not).
OTHER_RELEASES = (
    "bidirectional-lstm-sequences-concat",
    "bidirectional-lstm-initial-state-masked",
)


def leaves(layers):
    """The layers, those of a model nested as a layer in its place."""
    for layer in layers:
        if isinstance(layer, Model):  # Sequential too
            yield from leaves(layer.layers)
        else:
            yield layer


def main(out_root: str) -> None:
    reference = keras.__version__ == "2.2.4"
    folder = K.backend() if reference else f"{K.backend()}-{keras.__version__}"
    out = os.path.join(out_root, folder)
    os.makedirs(out, exist_ok=True)
    np.random.seed(0)
    for name, model, inputs in cases():
        if not reference and name not in OTHER_RELEASES:
            continue
        for layer in leaves(model.layers):  # weights away from the initialisers' 0s and 1s
            layer.set_weights(
                [
                    np.random.uniform(-0.8, 0.8, w.shape).astype("float32")
                    for w in layer.get_weights()
                ]
            )
            if isinstance(layer, BatchNormalization):  # a positive moving variance
                weights = layer.get_weights()
                weights[-1] = np.abs(weights[-1]) + 0.5
                layer.set_weights(weights)
        feed = inputs if len(inputs) > 1 else inputs[0]
        outputs = model.predict(feed)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        arrays = {f"x{i}": x for i, x in enumerate(inputs)}
        arrays.update({f"y{i}": y for i, y in enumerate(outputs)})
        masks = model.compute_mask(model.inputs, [None] * len(model.inputs))
        masks = masks if isinstance(masks, list) else [masks]
        given = [i for i, m in enumerate(masks) if m is not None]
        if given:
            values = K.function(model.inputs, [masks[i] for i in given])(inputs)
            for position, i in enumerate(given):  # Python 3.7: no zip(strict=...)
                arrays[f"m{i}"] = values[position].astype(bool)
        model.save(os.path.join(out, name + ".h5"))
        if name in SPLIT:
            with open(os.path.join(out, name + ".json"), "w") as f:
                f.write(model.to_json())
            model.save_weights(os.path.join(out, name + ".weights.h5"))
        np.savez(os.path.join(out, name + ".npz"), **arrays)
        print(keras.__version__, K.backend(), name, [y.shape for y in outputs], given)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
