"""The sequence zoo: recurrent, wrapper and attention models shaped like keras.io examples
(text classification, tagging, translation, time series), small enough to build in
seconds. Each is built by Keras 3 and by tf_keras, saved in every format each writes,
and must load, export and serve with Keras's numbers.

Token and time-series inputs are padded so that masks matter: every batch holds rows
padded at the start, at the end, with holes in the middle, unpadded rows and (where the
model has no masked mean, which would divide by zero in Keras too) a fully masked row.
Row 0, the one-row check of the oracle, is padded at both ends and in the middle.
"""

import numpy as np
from oracle_case import Case, InputMaker, floats

VOCAB = 40
TARGET_VOCAB = 12


def padding(rng: np.random.Generator, rows: int, steps: int, fully_masked: bool) -> np.ndarray:
    """Which steps are padding: a pattern per row, cycling every seven rows."""
    hidden = np.zeros((rows, steps), dtype=bool)
    for row in range(rows):
        pattern = row % 7
        holes = rng.random(steps) < 0.25
        holes[[0, -1]] = False
        if pattern == 0:  # both ends and the middle
            hidden[row, :1] = hidden[row, -2:] = True
            hidden[row] |= holes
        elif pattern == 1:  # right-padded: a prefix mask
            hidden[row, steps - 1 - rng.integers(1, steps // 2) :] = True
        elif pattern == 2:  # left-padded
            hidden[row, : rng.integers(1, steps // 2)] = True
        elif pattern == 3:
            hidden[row] = True if fully_masked else holes
        elif pattern == 4:  # holes only
            hidden[row] = holes
        elif pattern == 6:
            hidden[row] = rng.random(steps) < 0.4
        # pattern 5: no padding
    return hidden


def padded_tokens(vocab: int = VOCAB, fully_masked: bool = True) -> InputMaker:
    """Token ids in ``[1, vocab)`` with zeros (``mask_zero`` padding) per :func:`padding`."""

    def make(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        tokens = rng.integers(1, vocab, shape)
        tokens[padding(rng, shape[0], shape[1], fully_masked)] = 0
        return tokens.astype(dtype)

    return make


def padded_series(fully_masked: bool = True) -> InputMaker:
    """Normal floats whose padded timesteps (per :func:`padding`) are all zeros, so that
    ``Masking()`` masks them."""

    def make(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        series = floats()(rng, shape, dtype)
        series[padding(rng, shape[0], shape[1], fully_masked)] = 0
        return series

    return make


def positions(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """0, 1, ..., T-1 in every row: the positions of a position embedding."""
    return np.broadcast_to(np.arange(shape[1]), shape).astype(dtype)


def bidirectional_imdb(k, L):
    """keras.io "Bidirectional LSTM on IMDB"."""
    tokens = k.Input((12,), dtype="int32")
    x = L.Embedding(VOCAB, 8, mask_zero=True)(tokens)
    x = L.Bidirectional(L.LSTM(6, return_sequences=True))(x)
    x = L.Bidirectional(L.LSTM(5))(x)
    return k.Model(tokens, L.Dense(1, activation="sigmoid")(x))


def gru_text_classifier(k, L):
    """The "Working with RNNs" guide's text classifier, with GRUs (dropout is inert)."""
    tokens = k.Input((12,), dtype="int32")
    x = L.Embedding(VOCAB, 8, mask_zero=True)(tokens)
    x = L.GRU(8, return_sequences=True, dropout=0.2, recurrent_dropout=0.1)(x)
    x = L.GRU(6)(x)
    return k.Model(tokens, L.Dense(3, activation="softmax")(x))


def simple_rnn_text(k, L):
    """The "Working with RNNs" guide's SimpleRNN model: zero outputs at padded steps, a
    ReLU recurrence, run backwards."""
    tokens = k.Input((10,), dtype="int32")
    x = L.Embedding(VOCAB, 8, mask_zero=True)(tokens)
    x = L.SimpleRNN(8, return_sequences=True, zero_output_for_mask=True)(x)
    x = L.SimpleRNN(6, activation="relu", go_backwards=True)(x)
    return k.Model(tokens, L.Dense(3, activation="softmax")(x))


def bidirectional_gru_tagger(k, L):
    """A per-token tagger (keras.io named-entity recognition, recurrent): a Dense per
    token over a Bidirectional GRU. The output keeps the token mask."""
    tokens = k.Input((11,), dtype="int32")
    x = L.Embedding(VOCAB, 8, mask_zero=True)(tokens)
    x = L.Bidirectional(L.GRU(6, return_sequences=True), merge_mode="sum")(x)
    x = L.TimeDistributed(L.Dense(8, activation="relu"))(x)
    return k.Model(tokens, L.TimeDistributed(L.Dense(5, activation="softmax"))(x))


def transformer_classifier(k, L):
    """keras.io "Text classification with Transformer": token + position embedding, a
    MultiHeadAttention block with LayerNormalization and a feed-forward part, a masked
    mean. The positions are a second input (the example computes them in a custom layer)."""
    tokens = k.Input((12,), dtype="int32", name="tokens")
    places = k.Input((12,), dtype="int32", name="positions")
    x = L.Add()([L.Embedding(VOCAB, 8, mask_zero=True)(tokens), L.Embedding(12, 8)(places)])
    attended = L.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    x = L.LayerNormalization(epsilon=1e-6)(L.Add()([x, L.Dropout(0.1)(attended)]))
    feed_forward = L.Dense(8)(L.Dense(16, activation="relu")(x))
    x = L.LayerNormalization(epsilon=1e-6)(L.Add()([x, L.Dropout(0.1)(feed_forward)]))
    x = L.GlobalAveragePooling1D()(x)
    x = L.Dense(8, activation="relu")(L.Dropout(0.1)(x))
    return k.Model([tokens, places], L.Dense(2, activation="softmax")(x))


def seq2seq_translation(k, L):
    """keras.io "Character-level recurrent sequence-to-sequence model" on tokens: the
    encoder LSTM's states start the decoder LSTM; a softmax per decoded step."""
    source = k.Input((10,), dtype="int32", name="source")
    _, h, c = L.LSTM(8, return_state=True)(L.Embedding(VOCAB, 8, mask_zero=True)(source))
    target = k.Input((9,), dtype="int32", name="target")
    decoded = L.LSTM(8, return_sequences=True)(L.Embedding(VOCAB, 8)(target), initial_state=[h, c])
    softmax = L.TimeDistributed(L.Dense(TARGET_VOCAB, activation="softmax"))(decoded)
    return k.Model([source, target], softmax)


def gru_reset_before(k, L):
    """Keras 2's GRU: ``reset_after=False`` (one bias vector), hard-sigmoid gates (whose
    formula depends on the Keras version that wrote the file)."""
    inputs = k.Input((9, 4))
    x = L.GRU(8, reset_after=False, recurrent_activation="hard_sigmoid", return_sequences=True)(
        inputs
    )
    x = L.GRU(5, reset_after=False, go_backwards=True)(x)
    return k.Model(inputs, L.Dense(2)(x))


def stacked_cells(k, L):
    """The "Working with RNNs" guide's RNN over cells: a stack of an LSTM, a GRU and a
    SimpleRNN cell, then a single GRU cell without reset_after, run backwards."""
    tokens = k.Input((10,), dtype="int32")
    x = L.Embedding(VOCAB, 6, mask_zero=True)(tokens)
    cells = [L.LSTMCell(6), L.GRUCell(5), L.SimpleRNNCell(4)]
    x = L.RNN(cells, return_sequences=True)(x)
    x = L.RNN(L.GRUCell(4, reset_after=False), go_backwards=True)(x)
    return k.Model(tokens, L.Dense(2)(x))


def luong_attention_seq2seq(k, L):
    """A translation model with Luong-style (dot-product) attention of the decoder states
    over the encoder's sequence; both sides masked, the decoder started from the
    encoder's states."""
    source = k.Input((10,), dtype="int32", name="source")
    target = k.Input((8,), dtype="int32", name="target")
    encoded = L.Embedding(VOCAB, 8, mask_zero=True)(source)
    encoded, h, c = L.LSTM(8, return_sequences=True, return_state=True)(encoded)
    decoded = L.Embedding(VOCAB, 8, mask_zero=True)(target)
    decoded = L.LSTM(8, return_sequences=True)(decoded, initial_state=[h, c])
    context = L.Attention(use_scale=True)([decoded, encoded])
    merged = L.Concatenate()([context, decoded])
    hidden = L.TimeDistributed(L.Dense(8, activation="tanh"))(merged)
    return k.Model([source, target], L.Dense(TARGET_VOCAB, activation="softmax")(hidden))


def additive_attention_qa(k, L):
    """The AdditiveAttention documentation example (query-value attention over token
    embeddings, masked means of both) with the attention scores as a second output."""
    query_tokens = k.Input((8,), dtype="int32", name="query")
    value_tokens = k.Input((10,), dtype="int32", name="value")
    embedding = L.Embedding(VOCAB, 6, mask_zero=True)
    query, value = embedding(query_tokens), embedding(value_tokens)
    attended, scores = L.AdditiveAttention()([query, value], return_attention_scores=True)
    pooled = L.Concatenate()(
        [L.GlobalAveragePooling1D()(query), L.GlobalAveragePooling1D()(attended)]
    )
    return k.Model([query_tokens, value_tokens], [L.Dense(2)(pooled), scores])


def masked_timeseries_gru(k, L):
    """Variable-length sensor series: Masking (padded and missing steps anywhere), GRUs."""
    inputs = k.Input((10, 3))
    x = L.Masking()(inputs)
    x = L.GRU(8, return_sequences=True)(x)
    x = L.GRU(6)(x)
    return k.Model(inputs, L.Dense(2)(x))


def conv_gru(k, L):
    """keras.io time-series shape: causal Conv1D features, pooled, then GRUs."""
    inputs = k.Input((20, 2))
    x = L.Conv1D(8, 3, padding="causal", activation="relu")(inputs)
    x = L.MaxPooling1D(2)(x)
    x = L.GRU(6, return_sequences=True)(x)
    x = L.GRU(4)(x)
    return k.Model(inputs, L.Dense(1)(x))


def bidirectional_encoder_states(k, L):
    """A translation encoder whose Bidirectional LSTM returns its sequence (merged by
    product) and both directions' states, concatenated into the decoder's start."""
    tokens = k.Input((10,), dtype="int32")
    x = L.Embedding(VOCAB, 6, mask_zero=True)(tokens)
    sequence, forward_h, _, backward_h, _ = L.Bidirectional(
        L.LSTM(5, return_sequences=True, return_state=True), merge_mode="mul"
    )(x)
    state = L.Concatenate()([forward_h, backward_h])
    return k.Model(tokens, [sequence, L.Dense(3)(state)])


def transformer_decoder(k, L):
    """keras.io "English-to-Spanish translation with a sequence-to-sequence Transformer",
    shrunk: an encoder self-attention block, then the decoder's causal self-attention and
    cross-attention over the encoder's sequence. Attention dropout is set, which puts
    Keras 3's MultiHeadAttention on its einsum path (fully masked rows differ from
    tf_keras's there)."""
    source = k.Input((10,), dtype="int32", name="source")
    target = k.Input((8,), dtype="int32", name="target")
    encoded = L.Embedding(VOCAB, 8, mask_zero=True)(source)
    attended = L.MultiHeadAttention(num_heads=2, key_dim=4)(encoded, encoded)
    encoded = L.LayerNormalization()(L.Add()([encoded, attended]))
    decoded = L.Embedding(VOCAB, 8, mask_zero=True)(target)
    attended = L.MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.1)(
        decoded, decoded, use_causal_mask=True
    )
    x = L.LayerNormalization()(L.Add()([decoded, attended]))
    crossed = L.MultiHeadAttention(num_heads=2, key_dim=4, value_dim=3, dropout=0.1)(
        query=x, value=encoded, key=encoded
    )
    x = L.LayerNormalization()(L.Add()([x, crossed]))
    x = L.Dense(16, activation="relu")(x)
    return k.Model([source, target], L.Dense(TARGET_VOCAB, activation="softmax")(x))


def causal_concat_attention(k, L):
    """Causal self-attention with concat scores over a GRU's sequence, a Dense per step."""
    tokens = k.Input((10,), dtype="int32")
    x = L.Embedding(VOCAB, 6, mask_zero=True)(tokens)
    x = L.GRU(6, return_sequences=True)(x)
    x = L.Attention(score_mode="concat", use_scale=True)([x, x], use_causal_mask=True)
    return k.Model(tokens, L.TimeDistributed(L.Dense(3))(x))


CASES = [
    Case("bidirectional_imdb", bidirectional_imdb, inputs=[padded_tokens()]),
    Case("gru_text_classifier", gru_text_classifier, inputs=[padded_tokens()]),
    Case("simple_rnn_text", simple_rnn_text, inputs=[padded_tokens()]),
    Case("bidirectional_gru_tagger", bidirectional_gru_tagger, inputs=[padded_tokens()]),
    Case(
        "transformer_classifier",
        transformer_classifier,
        inputs=[padded_tokens(fully_masked=False), positions],
    ),
    Case(
        "seq2seq_translation",
        seq2seq_translation,
        inputs=[padded_tokens(), padded_tokens(TARGET_VOCAB)],
    ),
    Case("gru_reset_before", gru_reset_before),
    Case("stacked_cells", stacked_cells, inputs=[padded_tokens()]),
    Case(
        "luong_attention_seq2seq",
        luong_attention_seq2seq,
        inputs=[padded_tokens(), padded_tokens(TARGET_VOCAB, fully_masked=False)],
    ),
    Case(
        "additive_attention_qa",
        additive_attention_qa,
        inputs=[padded_tokens(fully_masked=False), padded_tokens()],
    ),
    Case("masked_timeseries_gru", masked_timeseries_gru, inputs=[padded_series()]),
    Case("conv_gru", conv_gru),
    Case("bidirectional_encoder_states", bidirectional_encoder_states, inputs=[padded_tokens()]),
    Case(
        "transformer_decoder",
        transformer_decoder,
        inputs=[padded_tokens(), padded_tokens(TARGET_VOCAB)],
    ),
    Case("causal_concat_attention", causal_concat_attention, inputs=[padded_tokens()]),
]
