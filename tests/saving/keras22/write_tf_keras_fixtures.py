"""Writes the tf.keras files of ``test_keras22_written.py`` that TensorFlow 1.15's bundled
tf.keras saves as Keras version "2.2.4-tf", where its masked steps differ from
multi-backend Keras 2.2.4's: an LSTM and a Bidirectional LSTM given initial states and a
masked input (the steps before the first valid one), and a Bidirectional LSTM over a
masked input (which tf.keras zeroes). In the environment of ``write_fixtures.py``:

    k22/bin/python tests/saving/keras22/write_tf_keras_fixtures.py

Each case is ``tf-keras-1.15/<case>.h5`` and ``<case>.npz`` (``x0``, ... the inputs,
``y0`` the output of ``model.predict``).
"""

import os
import sys

import numpy as np
from tensorflow import keras

layers = keras.layers
STEPS, FEATURES, UNITS = 6, 3, 2


def main(out_root: str) -> None:
    out = os.path.join(out_root, "tf-keras-1.15")
    os.makedirs(out, exist_ok=True)
    x = np.random.RandomState(9).uniform(-1, 1, (4, STEPS, FEATURES)).astype("float32")
    x[0, 4:] = 0.0
    x[1, :2] = 0.0
    x[2, 2:4] = 0.0
    rng = np.random.RandomState(1)
    for case, halves, given in (
        ("lstm-initial-state-masked", 1, True),
        ("bidirectional-lstm-initial-state-masked", 2, True),
        ("bidirectional-lstm-sequences-masked", 2, False),
    ):
        inputs = layers.Input((STEPS, FEATURES))
        states = [layers.Input((UNITS,)) for _ in range(2 * halves)] if given else []
        recurrent = layers.LSTM(UNITS, return_sequences=True)
        if halves == 2:
            recurrent = layers.Bidirectional(recurrent)
        outputs = recurrent(layers.Masking(0.0)(inputs), initial_state=states or None)
        model = keras.Model([inputs, *states], outputs)
        model.set_weights(
            [rng.uniform(-0.8, 0.8, w.shape).astype("float32") for w in model.get_weights()]
        )
        feed = [x] + [rng.uniform(-1, 1, (4, UNITS)).astype("float32") for _ in states]
        model.save(os.path.join(out, case + ".h5"))
        arrays = {f"x{i}": value for i, value in enumerate(feed)}
        predicted = model.predict(feed if states else x)
        np.savez(os.path.join(out, case + ".npz"), y0=predicted, **arrays)
        print(keras.__version__, case)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
