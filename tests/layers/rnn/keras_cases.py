"""GRU, SimpleRNN and LSTM built by real Keras (3 on JAX, and tf_keras).

Each model returns several layers' outputs, so one file covers many arguments. Masked
cases put ``Masking()`` on inputs whose hidden steps sit anywhere in the sequence, with
one row (row 2 of the oracle's 7) masked throughout, one starting with two masked steps
and one ending with a masked step (see :func:`holes`). The flavours differ on purpose in
some cases, and each file must be matched as its Keras computed it:

* ``hard_sigmoid`` is 0.2x+0.5 in tf_keras and x/6+0.5 in Keras 3 (inputs scaled so the
  gates reach the bends);
* with ``initial_state`` and a mask, tf_keras masks the steps, Keras 3 does not; before
  the first step the "previous output" is zeros in tf_keras and the initial h in Keras 3;
* unrolled loops: Keras 3 ignores ``zero_output_for_mask``; tf_keras zeroes the outputs
  by the time-order mask, also when ``go_backwards`` reverses them (and cannot build an
  unrolled layer with ``zero_output_for_mask`` that returns only the last output).
"""

from oracle_case import Case, floats, masked_steps, no_timesteps

STEPS, FEATURES = 5, 3


def holes(inner=None, fraction=0.3):
    """:func:`masked_steps` plus fixed patterns: row 2 masked at every step, row 3's
    first two steps, row 4's last step."""
    base = masked_steps(inner, fraction)

    def make(rng, shape, dtype):
        array = base(rng, shape, dtype)
        if shape[0] > 4:
            array[2] = 0
            array[3, :2] = 0
            array[4, -1] = 0
        return array

    return make


MASKED = [holes()]


def sequence(k, steps=STEPS):
    return k.Input((steps, FEATURES))


def many(layers_and_inputs, k, x):
    outputs = []
    for layer, source in layers_and_inputs:
        result = layer(source)
        outputs += list(result) if isinstance(result, (list, tuple)) else [result]
    return k.Model(x, outputs)


# ------------------------------------------------------------------------------- GRU


def gru_basics(k, L):
    x = sequence(k)
    return many(
        [
            (L.GRU(4), x),
            (L.GRU(3, return_sequences=True), x),
            (L.GRU(3, go_backwards=True, return_sequences=True), x),
            (L.GRU(2, go_backwards=True), x),
            (L.GRU(3, reset_after=False, return_sequences=True), x),
            (L.GRU(2, reset_after=False, go_backwards=True), x),
        ],
        k,
        x,
    )


def gru_return_state(k, L):
    x = sequence(k)
    return many(
        [
            (L.GRU(3, return_state=True), x),
            (L.GRU(3, return_state=True, return_sequences=True, go_backwards=True), x),
            (L.GRU(2, reset_after=False, return_state=True, return_sequences=True), x),
        ],
        k,
        x,
    )


def gru_activations(k, L):
    """Activations by name (hard_sigmoid's formula differs by flavour), no bias."""
    x = sequence(k)
    return many(
        [
            (L.GRU(3, recurrent_activation="hard_sigmoid", return_sequences=True), x),
            (L.GRU(3, activation="relu", recurrent_activation="hard_sigmoid"), x),
            (L.GRU(3, activation="softsign", use_bias=False, return_sequences=True), x),
            (L.GRU(3, reset_after=False, use_bias=False, activation="elu"), x),
            (L.GRU(2, activation=None, recurrent_activation="sigmoid"), x),
            (L.GRU(2, implementation=1, reset_after=False, return_sequences=True), x),
        ],
        k,
        x,
    )


def gru_masked(k, L):
    x = sequence(k)
    masked = L.Masking()(x)
    return many(
        [
            (L.GRU(3, return_sequences=True), masked),
            (L.GRU(3), masked),
            (L.GRU(3, go_backwards=True, return_sequences=True), masked),
            (L.GRU(2, reset_after=False, return_state=True, return_sequences=True), masked),
            (L.GRU(2, reset_after=False, go_backwards=True, return_state=True), masked),
        ],
        k,
        x,
    )


def gru_zero_output_for_mask(k, L):
    x = sequence(k)
    masked = L.Masking()(x)
    return many(
        [
            (L.GRU(3, return_sequences=True, zero_output_for_mask=True), masked),
            (L.GRU(3, zero_output_for_mask=True), masked),
            (L.GRU(2, go_backwards=True, return_sequences=True, zero_output_for_mask=True), masked),
            (L.GRU(2, go_backwards=True, zero_output_for_mask=True, return_state=True), masked),
        ],
        k,
        x,
    )


def gru_unrolled(k, L):
    """Unrolled loops: the leading "previous output" is zeros everywhere; the flavours
    treat ``zero_output_for_mask`` differently (module docstring)."""
    x = sequence(k)
    masked = L.Masking()(x)
    return many(
        [
            (L.GRU(3, unroll=True, return_sequences=True), x),
            (L.GRU(3, unroll=True, return_sequences=True), masked),
            (L.GRU(3, unroll=True, go_backwards=True, return_sequences=True), masked),
            (L.GRU(2, unroll=True, return_sequences=True, zero_output_for_mask=True), masked),
            (
                L.GRU(
                    2,
                    unroll=True,
                    go_backwards=True,
                    return_sequences=True,
                    zero_output_for_mask=True,
                ),
                masked,
            ),
        ],
        k,
        x,
    )


def gru_initial_state(k, L):
    """States from other inputs, with and without a mask (leading masked steps)."""
    x, h0, h1 = sequence(k), k.Input((3,)), k.Input((2,))
    masked = L.Masking()(x)
    out = L.GRU(3, return_sequences=True)(x, initial_state=h0)
    back, h = L.GRU(3, go_backwards=True, return_state=True)(masked, initial_state=[h0])
    seq = L.GRU(3, return_sequences=True, reset_after=False)(masked, initial_state=h0)
    unrolled = L.GRU(2, return_sequences=True, unroll=True)(masked, initial_state=h1)
    return k.Model([x, h0, h1], [out, back, h, seq, unrolled])


def gru_v1_defaults(k, L):
    """tf.compat.v1's GRU keeps Keras 2.2's defaults: hard_sigmoid, reset_after=False."""
    from tf_keras.src.layers.rnn.gru_v1 import GRU as GRUv1

    x = sequence(k)
    return many([(GRUv1(3, return_sequences=True), x), (GRUv1(2, go_backwards=True), x)], k, x)


# ------------------------------------------------------------------------- SimpleRNN


def simple_rnn_basics(k, L):
    x = sequence(k)
    return many(
        [
            (L.SimpleRNN(4), x),
            (L.SimpleRNN(3, return_sequences=True, go_backwards=True), x),
            (L.SimpleRNN(3, activation="relu", use_bias=False, return_state=True), x),
            (L.SimpleRNN(2, activation="hard_sigmoid", return_sequences=True), x),
            (L.SimpleRNN(2, activation=None, unroll=True, return_sequences=True), x),
        ],
        k,
        x,
    )


def simple_rnn_masked(k, L):
    x = sequence(k)
    masked = L.Masking()(x)
    return many(
        [
            (L.SimpleRNN(3, return_sequences=True), masked),
            (L.SimpleRNN(3, go_backwards=True, return_state=True), masked),
            (L.SimpleRNN(3, return_sequences=True, zero_output_for_mask=True), masked),
            (L.SimpleRNN(2, zero_output_for_mask=True, go_backwards=True), masked),
            (L.SimpleRNN(2, unroll=True, go_backwards=True, return_sequences=True), masked),
            (
                L.SimpleRNN(
                    2,
                    unroll=True,
                    go_backwards=True,
                    zero_output_for_mask=True,
                    return_sequences=True,
                ),
                masked,
            ),
        ],
        k,
        x,
    )


def simple_rnn_initial_state(k, L):
    x, h0 = sequence(k), k.Input((3,))
    masked = L.Masking()(x)
    out = L.SimpleRNN(3, return_sequences=True)(x, initial_state=h0)
    seq, h = L.SimpleRNN(3, return_sequences=True, return_state=True)(masked, initial_state=[h0])
    back = L.SimpleRNN(3, go_backwards=True, return_sequences=True)(masked, initial_state=h0)
    return k.Model([x, h0], [out, seq, h, back])


def stacked(k, L):
    """GRU into SimpleRNN into LSTM, the mask passed along."""
    return k.Sequential(
        [
            k.Input((STEPS, FEATURES)),
            L.Masking(),
            L.GRU(4, return_sequences=True),
            L.SimpleRNN(3, return_sequences=True, go_backwards=True),
            L.LSTM(2),
        ]
    )


# ------------------------------------------------------------------------------ LSTM


def lstm_mask_options(k, L):
    """What the LSTM gained with the shared base: zero_output_for_mask, unrolled loops."""
    x = sequence(k)
    masked = L.Masking()(x)
    return many(
        [
            (L.LSTM(3, return_sequences=True, zero_output_for_mask=True), masked),
            (L.LSTM(2, go_backwards=True, zero_output_for_mask=True, return_state=True), masked),
            (L.LSTM(3, unroll=True, return_sequences=True), masked),
            (
                L.LSTM(
                    2,
                    unroll=True,
                    go_backwards=True,
                    zero_output_for_mask=True,
                    return_sequences=True,
                ),
                masked,
            ),
        ],
        k,
        x,
    )


def lstm_unrolled_initial_state(k, L):
    """Unrolled: the leading "previous output" is zeros even with a non-zero state."""
    x, h0, c0 = sequence(k), k.Input((3,)), k.Input((3,))
    masked = L.Masking()(x)
    out = L.LSTM(3, unroll=True, return_sequences=True)(masked, initial_state=[h0, c0])
    rolled = L.LSTM(3, return_sequences=True)(masked, initial_state=[h0, c0])
    return k.Model([x, h0, c0], [out, rolled])


WIDE = [floats(scale=3.0)]  # pre-activations past hard_sigmoid's bends

# ------------------------------------------------------------------- no timesteps
# Keras (3 and tf_keras) fails when a recurrent layer is called on no timesteps; so must
# layerserve, and its exported graph, on each way the export can run the layer: the
# fused op (GRU and LSTM each: onnxruntime aborts the process on an empty GRU sequence),
# the fused op behind a mask, and the Scan of an activation the op lacks.


def no_steps(layer):
    return lambda k, L: k.Sequential([k.Input((None, FEATURES)), layer(L)])


def masked_no_steps(k, L):
    return k.Sequential([k.Input((None, FEATURES)), L.Masking(), L.GRU(3)])


NO_STEPS = {
    "inputs": [no_timesteps()],
    "input_refused": "expects at least one timestep",
    "onnx_input_refused": "needs_a_timestep",
}


CASES = [
    Case("gru_basics", gru_basics),
    Case("gru_return_state", gru_return_state),
    Case("gru_activations", gru_activations, inputs=WIDE),
    Case("gru_masked", gru_masked, inputs=MASKED),
    Case("gru_zero_output_for_mask", gru_zero_output_for_mask, inputs=MASKED),
    Case("gru_unrolled", gru_unrolled, inputs=MASKED),
    Case("gru_initial_state", gru_initial_state, inputs=[holes(), floats(), floats()]),
    Case("gru_v1_defaults", gru_v1_defaults, inputs=WIDE, flavours=("tf_keras",)),
    Case("simple_rnn_basics", simple_rnn_basics, inputs=WIDE),
    Case("simple_rnn_masked", simple_rnn_masked, inputs=MASKED),
    Case("simple_rnn_initial_state", simple_rnn_initial_state, inputs=[holes(), floats()]),
    Case("stacked_masked", stacked, inputs=MASKED),
    Case("lstm_mask_options", lstm_mask_options, inputs=MASKED),
    Case("lstm_unrolled_initial_state", lstm_unrolled_initial_state, inputs=[holes()]),
    Case(
        "gru_no_timesteps",
        no_steps(lambda L: L.GRU(3)),
        **NO_STEPS,
    ),
    Case(
        "lstm_no_timesteps",
        no_steps(lambda L: L.LSTM(3, return_sequences=True)),
        **NO_STEPS,
    ),
    Case(
        "simple_rnn_no_timesteps",
        no_steps(lambda L: L.SimpleRNN(3, go_backwards=True)),
        **NO_STEPS,
    ),
    Case("gru_masked_no_timesteps", masked_no_steps, **NO_STEPS),
    Case(
        "gru_scan_no_timesteps",
        no_steps(lambda L: L.GRU(3, activation="gelu")),
        **NO_STEPS,
    ),
]
