"""The core layers (Keras 2.2 documentation page), Conv2D and LSTM, built by real Keras."""

from oracle_case import Case, masked_steps


def seq(k, shape, *layers):
    return k.Sequential([k.Input(shape), *layers])


CASES = [
    Case("dense", lambda k, L: seq(k, (5,), L.Dense(3, activation="tanh"))),
    Case("conv2d_same", lambda k, L: seq(k, (7, 7, 2), L.Conv2D(3, 3, strides=2, padding="same"))),
    Case(
        "masking_lstm",
        lambda k, L: seq(k, (6, 3), L.Masking(), L.LSTM(4, return_sequences=True)),
        inputs=[masked_steps()],
    ),
]
