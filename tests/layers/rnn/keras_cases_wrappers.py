"""Bidirectional, TimeDistributed and RNN(cell) built by real Keras (3 on JAX, and tf_keras).

Masked cases hide whole timesteps anywhere in the sequence (leading, interior,
trailing), and one row entirely (``fully_masked_row``): Keras 3 and tf_keras force
``zero_output_for_mask`` on both halves of a Bidirectional that returns sequences.
"""

from oracle_case import Case, floats, ints, masked_steps

STEPS, FEATURES = 6, 4


def fully_masked_row(inner=None, fraction=0.3):
    """:func:`masked_steps`, with row 2 (of the oracle's 7) masked at every step."""
    base = masked_steps(inner, fraction)

    def make(rng, shape, dtype):
        array = base(rng, shape, dtype)
        if shape[0] > 2:
            array[2] = 0
        return array

    return make


def sequence(k):
    return k.Input((STEPS, FEATURES))


def flat(values):
    """tf_keras returns a stack's states nested cell by cell (``[[h, c], h2]``)."""
    if isinstance(values, (list, tuple)):
        return [leaf for value in values for leaf in flat(value)]
    return [values]


def cell_states(states):
    """Initial states of a stack [LSTMCell, GRUCell], nested per cell as Keras wants."""
    return [states[:2], *states[2:]]


# ---------------------------------------------------------------------- Bidirectional


def bidirectional_merge_modes(k, L):
    """Every merge mode, with and without returned sequences."""
    x = sequence(k)
    outputs = [
        L.Bidirectional(L.LSTM(3, return_sequences=True))(x),
        L.Bidirectional(L.LSTM(3), merge_mode="sum")(x),
        L.Bidirectional(L.LSTM(2, return_sequences=True), merge_mode="mul")(x),
        L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode="ave")(x),
        L.Bidirectional(L.LSTM(2), merge_mode="concat")(x),
    ]
    pair = L.Bidirectional(L.LSTM(2, return_sequences=True), merge_mode=None)(x)
    return k.Model(x, [*outputs, *pair])


def bidirectional_return_state(k, L):
    """``[merged, h_f, c_f, h_b, c_b]``, and ``[fwd, bwd, *states]`` without merging."""
    x = sequence(k)
    merged = L.Bidirectional(L.LSTM(3, return_sequences=True, return_state=True))(x)
    pair = L.Bidirectional(L.LSTM(2, return_state=True), merge_mode=None)(x)
    return k.Model(x, [*merged, *pair])


def bidirectional_backward_layer(k, L):
    """A given backward layer, with other units and activations than the forward one;
    and one given with the roles swapped (the forward layer runs backwards)."""
    x = sequence(k)
    given = L.Bidirectional(
        L.LSTM(3, return_sequences=True),
        backward_layer=L.LSTM(2, activation="relu", go_backwards=True, return_sequences=True),
    )(x)
    swapped = L.Bidirectional(
        L.LSTM(3, go_backwards=True, return_sequences=True),
        backward_layer=L.LSTM(2, return_sequences=True),
    )(x)
    return k.Model(x, [given, swapped])


def bidirectional_reversed_forward(k, L):
    """tf_keras derives the backward layer by flipping ``go_backwards`` (Keras 3 sets it
    True, and refuses a forward layer that runs backwards)."""
    x = sequence(k)
    masked = L.Masking()(x)
    y = L.Bidirectional(L.LSTM(3, go_backwards=True, return_sequences=True))(masked)
    return k.Model(x, [y, L.Bidirectional(L.LSTM(2, go_backwards=True))(x)])


def bidirectional_masking(k, L):
    """Masks from Masking: sequences (masked steps zeroed), last outputs, pairs."""
    x = sequence(k)
    masked = L.Masking()(x)
    return k.Model(
        x,
        [
            L.Bidirectional(L.LSTM(3, return_sequences=True))(masked),
            L.Bidirectional(L.LSTM(3), merge_mode="ave")(masked),
            *L.Bidirectional(L.LSTM(2, return_sequences=True), merge_mode=None)(masked),
        ],
    )


def bidirectional_masking_state(k, L):
    x = sequence(k)
    masked = L.Masking()(x)
    return k.Model(x, L.Bidirectional(L.LSTM(3, return_sequences=True, return_state=True))(masked))


def bidirectional_embedding(k, L):
    """An Embedding mask (``mask_zero``) reaching a Bidirectional, then a Dense."""
    tokens = k.Input((STEPS,), dtype="int32")
    embedded = L.Embedding(5, 4, mask_zero=True)(tokens)
    hidden = L.Bidirectional(L.LSTM(3, return_sequences=True))(embedded)
    return k.Model(tokens, [hidden, L.Bidirectional(L.LSTM(2))(hidden)])


def bidirectional_initial_state(k, L):
    """``initial_state``: the forward half's [h, c], then the backward half's."""
    x = sequence(k)
    states = [k.Input((3,)) for _ in range(4)]
    y = L.Bidirectional(L.LSTM(3, return_sequences=True))(x, initial_state=states)
    return k.Model([x, *states], y)


def bidirectional_initial_state_masked(k, L):
    x = sequence(k)
    states = [k.Input((2,)) for _ in range(4)]
    masked = L.Masking()(x)
    y = L.Bidirectional(L.LSTM(2, return_sequences=True))(masked, initial_state=states)
    return k.Model([x, *states], y)


def stacked_bidirectional(k, L):
    return k.Sequential(
        [
            k.Input((STEPS, FEATURES)),
            L.Masking(),
            L.Bidirectional(L.LSTM(3, return_sequences=True)),
            L.Bidirectional(L.LSTM(2)),
            L.Dense(2),
        ]
    )


# -------------------------------------------------------------------- TimeDistributed


def time_distributed_dense(k, L):
    """Dense per step, after Masking: the output keeps the input's mask."""
    x = sequence(k)
    masked = L.Masking()(x)
    return k.Model(
        x,
        [
            L.TimeDistributed(L.Dense(5, activation="tanh"))(masked),
            L.TimeDistributed(L.Dense(3))(x),
        ],
    )


def time_distributed_conv(k, L):
    """Conv2D, MaxPooling2D and Flatten per frame of a video-shaped input."""
    frames = k.Input((3, 6, 6, 2))
    y = L.TimeDistributed(L.Conv2D(4, 3, padding="same", activation="relu"))(frames)
    y = L.TimeDistributed(L.MaxPooling2D(2))(y)
    return k.Model(frames, [y, L.TimeDistributed(L.Flatten())(y)])


def time_distributed_pooling_masked(k, L):
    """Documents of sentences of words: an Embedding mask ``(N, T, S)`` reaches a
    GlobalAveragePooling1D per sentence (masked mean over words), then MaxPooling1D."""
    words = k.Input((STEPS, 5), dtype="int32")
    embedded = L.Embedding(6, 4, mask_zero=True)(words)
    sentences = L.TimeDistributed(L.GlobalAveragePooling1D())(embedded)
    dense = L.TimeDistributed(L.Dense(4))(embedded)
    return k.Model(words, [sentences, dense])


def time_distributed_bidirectional(k, L):
    """A sentence encoder per step: Bidirectional(LSTM) over each sentence's words (its
    halves' weights in order inside TimeDistributed), the word mask sliced per step."""
    words = k.Input((STEPS, 5), dtype="int32")
    embedded = L.Embedding(6, 4, mask_zero=True)(words)
    encoded = L.TimeDistributed(L.Bidirectional(L.LSTM(2)))(embedded)
    return k.Model(words, [encoded, L.TimeDistributed(L.Bidirectional(L.GRU(2)))(embedded)])


def time_distributed_batch_norm(k, L):
    """Trainable then non-trainable weights (gamma, beta, then mean, variance)."""
    x = sequence(k)
    return k.Model(x, L.TimeDistributed(L.BatchNormalization())(x))


def time_distributed_sequential(k, L):
    """A nested Sequential applied per step."""
    x = sequence(k)
    inner = k.Sequential([k.Input((FEATURES,)), L.Dense(5, activation="relu"), L.Dense(2)])
    return k.Model(x, L.TimeDistributed(inner)(x))


def time_distributed_sequential_with_statistics(k, L):
    """A nested Sequential holding BatchNormalization and a frozen layer: each layer's
    weights stay its own (trainable ones first would hand the statistics to another)."""
    x = sequence(k)
    inner = k.Sequential(
        [
            k.Input((FEATURES,)),
            L.Dense(3, name="frozen"),
            L.BatchNormalization(name="norm"),
            L.Dense(3, name="a_last"),  # sorts before the others by name
        ]
    )
    inner.get_layer("frozen").trainable = False
    return k.Model(x, L.TimeDistributed(inner)(x))


def bidirectional_gru_simple_rnn(k, L):
    """GRU and SimpleRNN halves: masked sequences, states, an activation of their own."""
    x = sequence(k)
    masked = L.Masking()(x)
    return k.Model(
        x,
        [
            L.Bidirectional(L.GRU(3, return_sequences=True))(masked),
            *L.Bidirectional(L.GRU(2, reset_after=False, return_state=True), merge_mode="sum")(x),
            L.Bidirectional(L.SimpleRNN(3, return_sequences=True), merge_mode="ave")(masked),
            *L.Bidirectional(
                L.SimpleRNN(2, activation="relu", return_state=True, return_sequences=True),
                merge_mode=None,
            )(masked),
        ],
    )


# ------------------------------------------------------------------------ RNN(cell)


def rnn_cells(k, L):
    """Each built-in cell in the generic RNN, with and without a mask."""
    x = sequence(k)
    masked = L.Masking()(x)
    return k.Model(
        x,
        [
            L.RNN(L.LSTMCell(3), return_sequences=True)(masked),
            L.RNN(L.GRUCell(3))(masked),
            L.RNN(L.GRUCell(2, reset_after=False), return_sequences=True)(x),
            L.RNN(L.SimpleRNNCell(3, activation="relu"), return_sequences=True)(masked),
            *L.RNN(L.LSTMCell(2), return_state=True)(x),
        ],
    )


def rnn_go_backwards(k, L):
    x = sequence(k)
    masked = L.Masking()(x)
    return k.Model(
        x,
        [
            L.RNN(L.LSTMCell(3), go_backwards=True, return_sequences=True)(masked),
            L.RNN(L.GRUCell(2), go_backwards=True)(masked),
            L.RNN([L.SimpleRNNCell(3), L.GRUCell(2)], go_backwards=True, return_sequences=True)(
                masked
            ),
        ],
    )


def rnn_stacked_cells(k, L):
    """A StackedRNNCells of three cells of different kinds and sizes, and a list of
    cells; the states come cell by cell."""
    x = sequence(k)
    masked = L.Masking()(x)
    stack = L.StackedRNNCells([L.LSTMCell(3), L.GRUCell(4), L.SimpleRNNCell(2)])
    return k.Model(
        x,
        [
            *flat(L.RNN(stack, return_sequences=True, return_state=True)(masked)),
            L.RNN([L.GRUCell(2), L.LSTMCell(3)])(x),
        ],
    )


def rnn_stacked_cells_nested_outputs(k, L):
    """A stack of cells returning its states, as the model's outputs: Keras nests them
    cell by cell (``[out, [h, c], h2]``); layerserve lists them flat, in that order."""
    x = sequence(k)
    return k.Model(x, L.RNN([L.LSTMCell(3), L.GRUCell(2)], return_state=True)(x))


def timedistributed_model(k, L):
    """A per-step model (Dense, then batch normalization: Keras 3 keys its layers by
    class, ``dense`` after ``batch_normalization``) over every timestep."""
    step = k.Input((3,))
    per_step = k.Model(step, L.BatchNormalization()(L.Dense(4)(step)), name="per_step")
    x = k.Input((5, 3))
    return k.Model(x, L.TimeDistributed(per_step)(x))


def hierarchical_embedding(k, L):
    """Documents of sentences of word ids: TimeDistributed(Embedding), an LSTM over the
    words of each sentence, then one over the sentences (the graph's LSTM kernels are
    floats, whatever the ids' type)."""
    ids = k.Input((3, 5), dtype="int32")
    words = L.TimeDistributed(L.Embedding(10, 4))(ids)
    sentences = L.TimeDistributed(L.LSTM(3))(words)
    return k.Model(ids, L.LSTM(2)(sentences))


def rnn_zero_output(k, L):
    x = sequence(k)
    masked = L.Masking()(x)
    return k.Model(
        x,
        [
            L.RNN(L.LSTMCell(3), return_sequences=True, zero_output_for_mask=True)(masked),
            L.RNN(
                [L.GRUCell(2), L.SimpleRNNCell(3)], return_sequences=True, zero_output_for_mask=True
            )(masked),
        ],
    )


def rnn_initial_state(k, L):
    x = sequence(k)
    h, c, g = k.Input((3,)), k.Input((3,)), k.Input((2,))
    single = L.RNN(L.LSTMCell(3), return_sequences=True)(x, initial_state=[h, c])
    stacked = L.RNN([L.LSTMCell(3), L.GRUCell(2)], return_sequences=True)(
        x, initial_state=cell_states([h, c, g])
    )
    return k.Model([x, h, c, g], [single, stacked])


def bidirectional_rnn(k, L):
    """Bidirectional over the generic RNN, over one cell and over a stack."""
    x = sequence(k)
    masked = L.Masking()(x)
    stack = L.RNN([L.LSTMCell(3), L.GRUCell(2)])  # cells whose keys do not sort in order
    return k.Model(
        x,
        [
            L.Bidirectional(L.RNN(L.GRUCell(3), return_sequences=True))(masked),
            L.Bidirectional(stack)(x),
        ],
    )


def unrolled(k, L):
    """Unrolled halves and cells: Keras 3 ignores zero_output_for_mask when unrolled,
    tf.keras zeroes by time order (the recurrent layers' own rules, through the
    wrappers)."""
    x = sequence(k)
    masked = L.Masking()(x)
    return k.Model(
        x,
        [
            L.Bidirectional(L.GRU(3, unroll=True, return_sequences=True))(masked),
            L.RNN(
                L.SimpleRNNCell(3),
                unroll=True,
                go_backwards=True,
                zero_output_for_mask=True,
                return_sequences=True,
            )(masked),
        ],
    )


def wrappers_first_in_sequential(k, L):
    """Wrappers given ``input_shape`` as the first layer of a Sequential."""
    return k.Sequential(
        [
            L.TimeDistributed(L.Dense(3), input_shape=(STEPS, FEATURES)),
            L.Bidirectional(L.LSTM(2)),
        ]
    )


def time_distributed_rnns(k, L):
    """A hierarchical sequence model: an LSTM returning sequences and a GRU over the
    words of every sentence (no mask flows into them)."""
    document = k.Input((3, 5, 4))
    words = L.TimeDistributed(L.LSTM(6, return_sequences=True))(document)
    sentences = L.TimeDistributed(L.GRU(4))(words)
    return k.Model(document, [words, L.LSTM(3)(sentences)])


CASES = [
    Case("bidirectional_merge_modes", bidirectional_merge_modes),
    Case("bidirectional_return_state", bidirectional_return_state),
    Case("bidirectional_backward_layer", bidirectional_backward_layer),
    Case(
        "bidirectional_reversed_forward",
        bidirectional_reversed_forward,
        inputs=[fully_masked_row()],
        flavours=("tf_keras",),
    ),
    Case("bidirectional_masking", bidirectional_masking, inputs=[fully_masked_row()]),
    Case("bidirectional_masking_state", bidirectional_masking_state, inputs=[fully_masked_row()]),
    Case("bidirectional_embedding", bidirectional_embedding, inputs=[ints(0, 5)]),
    Case("bidirectional_initial_state", bidirectional_initial_state),
    Case(
        "bidirectional_initial_state_masked",
        bidirectional_initial_state_masked,
        inputs=[fully_masked_row(), *[floats()] * 4],
    ),
    Case("stacked_bidirectional", stacked_bidirectional, inputs=[fully_masked_row()]),
    Case("bidirectional_gru_simple_rnn", bidirectional_gru_simple_rnn, inputs=[fully_masked_row()]),
    Case("rnn_cells", rnn_cells, inputs=[fully_masked_row()]),
    Case("rnn_go_backwards", rnn_go_backwards, inputs=[fully_masked_row()]),
    Case("rnn_stacked_cells", rnn_stacked_cells, inputs=[fully_masked_row()]),
    Case("rnn_stacked_cells_nested_outputs", rnn_stacked_cells_nested_outputs),
    Case("hierarchical_embedding", hierarchical_embedding, inputs=[ints(0, 10)]),
    Case("timedistributed_model", timedistributed_model),
    Case("rnn_zero_output", rnn_zero_output, inputs=[fully_masked_row()]),
    Case("rnn_initial_state", rnn_initial_state),
    Case("bidirectional_rnn", bidirectional_rnn, inputs=[fully_masked_row()]),
    Case("unrolled", unrolled, inputs=[fully_masked_row()]),
    Case("wrappers_first_in_sequential", wrappers_first_in_sequential),
    Case("time_distributed_dense", time_distributed_dense, inputs=[fully_masked_row()]),
    Case("time_distributed_conv", time_distributed_conv),
    Case("time_distributed_pooling_masked", time_distributed_pooling_masked, inputs=[ints(0, 5)]),
    Case("time_distributed_bidirectional", time_distributed_bidirectional, inputs=[ints(0, 6)]),
    Case("time_distributed_nested_statistics", time_distributed_sequential_with_statistics),
    Case("time_distributed_batch_norm", time_distributed_batch_norm),
    Case("time_distributed_sequential", time_distributed_sequential),
    Case("time_distributed_rnns", time_distributed_rnns),
]
