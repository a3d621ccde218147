"""Attention layers built by real Keras (3 on JAX, and tf_keras).

Masked cases put ``Masking()`` on sequences whose zeroed steps are anywhere, and some
samples entirely zeroed (fully masked query rows and value columns). In Keras 3 a
MultiHeadAttention removes the masks of its input tensors when it runs (not while the
model is built), so a layer that runs after it and reads such a tensor's own mask sees
none (``mha_mask_removal_*``, the ``transformer_*`` cases); layerserve reproduces that,
and refuses the graphs where Keras's order within a depth decides. Keras 3 chooses its
code path from dropout, rank and returned scores; fully masked rows differ between
paths (uniform on the fused path, zeros on the einsum path).
"""

from oracle_case import Case, floats, ints, masked_steps


def rows_zeroed(fraction=0.3, rows=(1, 4)):
    """``masked_steps`` with whole samples zeroed too: fully masked rows/columns."""
    inner = masked_steps(fraction=fraction)

    def make(rng, shape, dtype):
        array = inner(rng, shape, dtype)
        for row in rows:
            if row < shape[0]:
                array[row] = 0
        return array

    return make


def seqs(k, *shapes):
    return [k.Input(shape) for shape in shapes]


def attention_dot(k, L):
    q, v, key = seqs(k, (5, 4), (6, 3), (6, 4))
    out, scores = L.Attention(use_scale=True)([q, v, key], return_attention_scores=True)
    return k.Model(
        [q, v, key],
        [L.Attention()([q, key]), L.Attention()([q, v, key], use_causal_mask=True), out, scores],
    )


def attention_concat(k, L):
    q, v = seqs(k, (5, 4), (6, 4))
    return k.Model(
        [q, v],
        [
            L.Attention(score_mode="concat")([q, v]),
            L.Attention(score_mode="concat", use_scale=True)([q, v], use_causal_mask=True),
            L.AdditiveAttention()([q, v]),
            L.AdditiveAttention(use_scale=False, dropout=0.3)([q, v], use_causal_mask=True),
        ],
    )


def attention_masked(k, L):
    q_in, v_in = seqs(k, (5, 4), (6, 4))
    q, v = L.Masking()(q_in), L.Masking()(v_in)
    out, scores = L.Attention(use_scale=True)([q, v], return_attention_scores=True)
    return k.Model(
        [q_in, v_in],
        [
            L.Attention()([q, v]),
            L.Attention()([q, v], use_causal_mask=True),
            out,
            scores,
            L.AdditiveAttention()([q, v, v]),
            L.Attention()([q_in, v]),  # value mask only
        ],
    )


def attention_rank4(k, L):
    """(B, X, T, dim) inputs: scores over the last two axes, masks from Masking."""
    q_in, v_in = seqs(k, (3, 5, 4), (3, 6, 4))
    q, v = L.Masking()(q_in), L.Masking()(v_in)
    out, scores = L.Attention(score_mode="concat")([q, v], return_attention_scores=True)
    return k.Model(
        [q_in, v_in],
        [L.Attention()([q, v], use_causal_mask=True), out, scores, L.AdditiveAttention()([q, v])],
    )


def attention_rank4_plain(k, L):
    q, v = seqs(k, (3, 5, 4), (3, 6, 4))
    out, scores = L.Attention(score_mode="concat")([q, v], return_attention_scores=True)
    return k.Model(
        [q, v],
        [L.Attention()([q, v], use_causal_mask=True), out, scores, L.AdditiveAttention()([q, v])],
    )


def attention_embedding_mask(k, L):
    q_in, v_in = k.Input((5,), dtype="int32"), k.Input((6,), dtype="int32")
    q = L.Embedding(6, 4, mask_zero=True)(q_in)
    v = L.Embedding(6, 4, mask_zero=True)(v_in)
    return k.Model([q_in, v_in], [L.Attention(score_mode="concat")([q, v], use_causal_mask=True)])


def mha_basic(k, L):
    """value_dim != key_dim takes dropout: Keras 3's fused path (JAX's
    dot_product_attention) cannot run heads of two sizes."""
    q, v, key = seqs(k, (5, 4), (6, 3), (6, 2))
    return k.Model(
        [q, v, key],
        [
            L.MultiHeadAttention(2, 3)(q, v),
            L.MultiHeadAttention(3, 2, value_dim=4, output_shape=5, dropout=0.1)(q, v, key),
            L.MultiHeadAttention(1, 4, use_bias=False, output_shape=(2, 3))(q, v, key=key),
            L.MultiHeadAttention(2, 3)(q, q),
        ],
    )


def mha_scores_causal(k, L):
    q, v = seqs(k, (5, 4), (6, 4))
    out, scores = L.MultiHeadAttention(2, 3)(q, v, return_attention_scores=True)
    causal, causal_scores = L.MultiHeadAttention(2, 2, dropout=0.2)(
        q, v, use_causal_mask=True, return_attention_scores=True
    )
    return k.Model(
        [q, v],
        [
            out,
            scores,
            causal,
            causal_scores,
            L.MultiHeadAttention(2, 3)(q, q, use_causal_mask=True),
        ],
    )


def mha_attention_mask(k, L):
    q, v, mask = k.Input((5, 4)), k.Input((6, 4)), k.Input((5, 6))
    out, scores = L.MultiHeadAttention(2, 3)(
        q, v, attention_mask=mask, return_attention_scores=True
    )
    return k.Model(
        [q, v, mask],
        [
            L.MultiHeadAttention(2, 3)(q, v, attention_mask=mask),
            out,
            scores,
            L.MultiHeadAttention(2, 3, dropout=0.1)(
                q, v, attention_mask=mask, use_causal_mask=True
            ),
        ],
    )


def mha_masked(k, L):
    """Fully masked samples: the fused path (uniform), the einsum path (dropout or
    scores: zeros in Keras 3, uniform in tf_keras)."""
    q_in, v_in = seqs(k, (5, 4), (6, 4))

    def masked():
        return L.Masking()(q_in), L.Masking()(v_in)

    q1, v1 = masked()
    q2, v2 = masked()
    q3, v3 = masked()
    out, scores = L.MultiHeadAttention(2, 3)(q3, v3, return_attention_scores=True)
    return k.Model(
        [q_in, v_in],
        [
            L.MultiHeadAttention(2, 3)(q1, v1),
            L.MultiHeadAttention(2, 3, dropout=0.1)(q2, v2, use_causal_mask=True),
            out,
            scores,
        ],
    )


def mha_key_mask(k, L):
    """A key with its own mask (ANDed with the value's), on both Keras 3 paths."""
    q_in, v_in, k_in = seqs(k, (5, 4), (6, 3), (6, 2))
    q1, v1, k1 = L.Masking()(q_in), L.Masking()(v_in), L.Masking()(k_in)
    q2, v2, k2 = L.Masking()(q_in), L.Masking()(v_in), L.Masking()(k_in)
    out, scores = L.MultiHeadAttention(2, 3)(q2, v2, key=k2, return_attention_scores=True)
    return k.Model([q_in, v_in, k_in], [L.MultiHeadAttention(2, 3)(q1, v1, key=k1), out, scores])


def mha_embedding_self_attention(k, L):
    """Embedding(mask_zero) read by MultiHeadAttention alone (Keras 3 then keeps it)."""
    tokens = k.Input((6,), dtype="int32")
    x = L.Embedding(5, 8, mask_zero=True)(tokens)
    attended = L.MultiHeadAttention(2, 4)(x, x, use_causal_mask=True)
    return k.Model(tokens, L.Dense(3)(attended))


def mha_attention_axes(k, L):
    q, v = seqs(k, (3, 4, 5), (3, 2, 5))
    out, scores = L.MultiHeadAttention(2, 3, attention_axes=(1, 2))(
        q, v, return_attention_scores=True
    )
    return k.Model(
        [q, v],
        [
            out,
            scores,
            L.MultiHeadAttention(2, 3, attention_axes=2, output_shape=6)(q, v),
            L.MultiHeadAttention(2, 3)(q, q),
        ],
    )


def transformer_block(k, L):
    x_in = k.Input((6,), dtype="int32")
    x = L.Embedding(10, 8)(x_in)
    attn = L.MultiHeadAttention(2, 4, dropout=0.1)(x, x, use_causal_mask=True)
    x = L.LayerNormalization()(L.Add()([x, attn]))
    ffn = L.Dense(8)(L.Dense(16, activation="relu")(x))
    return k.Model(x_in, L.LayerNormalization()(L.Add()([x, ffn])))


def transformer_block_masked(k, L):
    x_in = k.Input((6,), dtype="int32")
    x = L.Embedding(10, 8, mask_zero=True)(x_in)
    attn = L.MultiHeadAttention(2, 4)(x, x)
    x = L.LayerNormalization()(L.Add()([x, attn]))
    return k.Model(x_in, L.Dense(3)(x))


def transformer_encoder_masked(k, L):
    """Two masked Transformer blocks with residuals (keras.io's text classifier). In
    Keras 3 the first residual ``Add`` runs after the attention layer removed the
    embedding's mask, so it has no mask: the second block attends to every step, and
    the per-step output has no mask. The pooling reads the mask recorded in the file
    (built before anything removed it) and still averages the unmasked steps."""
    tokens = k.Input((7,), dtype="int32")
    x = L.Embedding(10, 8, mask_zero=True)(tokens)
    for heads in (2, 1):
        attended = L.MultiHeadAttention(heads, 4)(x, x)
        x = L.LayerNormalization()(L.Add()([x, attended]))
        x = L.LayerNormalization()(L.Add()([x, L.Dense(8)(x)]))
    return k.Model(tokens, [L.Dense(3)(x), L.GlobalAveragePooling1D()(x), L.GRU(3)(x)])


def mha_mask_removal_by_depth(k, L):
    """Keras runs a graph by decreasing depth. ``late`` reads the embedding after the
    deeper attention layer removed its mask (no mask for the second attention layer);
    ``early`` is deeper than the attention layer that reads its input, so it reads the
    mask first."""
    tokens = k.Input((6,), dtype="int32")
    x = L.Embedding(10, 4, mask_zero=True)(tokens)
    deep = L.MultiHeadAttention(2, 2)(x, x)
    deep = L.Dense(4)(L.Dense(4)(deep))
    late = L.Dense(4, name="late")(x)
    late = L.MultiHeadAttention(2, 2)(late, late)
    y = L.Embedding(10, 4, mask_zero=True)(tokens)
    shallow = L.MultiHeadAttention(2, 2)(y, y)
    early = L.Dense(4, name="early")(y)
    early = L.MultiHeadAttention(2, 2)(early, early)
    return k.Model(tokens, [L.Add()([deep, late]), L.Add()([shallow, early])])


def attention_after_mha_removed_the_mask(k, L):
    """Keras 3 records no mask for an Attention call: it reads the value's mask when it
    runs, after the MultiHeadAttention that read the same embedding removed it."""
    query_tokens = k.Input((5,), dtype="int32")
    value_tokens = k.Input((7,), dtype="int32")
    embedding = L.Embedding(9, 4, mask_zero=True)
    query, value = embedding(query_tokens), embedding(value_tokens)
    attended = L.MultiHeadAttention(2, 2)(query, value)
    return k.Model([query_tokens, value_tokens], L.Attention()([L.Dense(4)(attended), value]))


def mha_by_keyword(k, L):
    """``mha(query=..., value=..., key=...)`` as keras.io writes it (Keras 3 records the
    query among the call's keyword arguments)."""
    q, v, key = seqs(k, (5, 4), (6, 3), (6, 2))
    crossed = L.MultiHeadAttention(2, 3)(query=q, value=v, key=key)
    return k.Model([q, v, key], [crossed, L.MultiHeadAttention(2, 3)(value=v, query=q)])


def mha_same_depth_readers(k, L):
    """Two attention layers at the same depth read one masked tensor: in Keras 3 the one
    that runs first removes the mask the other would read."""
    tokens = k.Input((6,), dtype="int32")
    x = L.Embedding(10, 4, mask_zero=True)(tokens)
    return k.Model(
        tokens, L.Add()([L.MultiHeadAttention(2, 2)(x, x), L.MultiHeadAttention(2, 2)(x, x)])
    )


def mha_in_nested_model(k, L):
    """A nested model hands its input to a MultiHeadAttention: in Keras 3 that removes
    the mask of the caller's tensor, which ``late`` reads after it."""
    tokens = k.Input((6,), dtype="int32")
    x = L.Embedding(10, 4, mask_zero=True)(tokens)
    inner_in = k.Input((6, 4))
    inner = k.Model(inner_in, L.MultiHeadAttention(2, 2)(inner_in, inner_in), name="inner")
    deep = L.Dense(4)(L.Dense(4)(inner(x)))
    return k.Model(tokens, [deep, L.Dense(4, name="late")(x)])


def mha_nested_input_read_after(k, L):
    """A nested model called on a masked tensor hands its input to a MultiHeadAttention,
    then to an ``Add`` after it and a ``Dense`` shallower than it: in Keras 3 both read
    the input after the attention layer removed the mask the caller's call set on it, so
    the nested model's outputs have no mask and the attention layer after it attends to
    every step (an ``Attention`` layer: tf.keras records a MultiHeadAttention's ``value``
    as a call argument, whose nested-model reference layerserve misreads)."""
    tokens = k.Input((6,), dtype="int32")
    x = L.Embedding(10, 4, mask_zero=True)(tokens)
    inner_in = k.Input((6, 4))
    attended = L.MultiHeadAttention(2, 2)(inner_in, inner_in)
    residual = L.Add()([inner_in, attended])
    late = L.Dense(4, name="inner_late")(inner_in)
    deep = L.Dense(4)(L.Dense(4)(residual))
    inner = k.Model(inner_in, [residual, L.Add()([deep, late])], name="inner")
    y, z = inner(x)
    return k.Model(tokens, [y, z, L.Attention()([z, z])])


def mha_after_nested_model(k, L):
    """A MultiHeadAttention called on a nested model's outputs: tf.keras records its
    ``value`` as a call argument holding a reference to the nested model's call, which is
    renumbered as the inputs are."""
    tokens = k.Input((6,), dtype="int32")
    x = L.Embedding(10, 4, mask_zero=True)(tokens)
    inner_in = k.Input((6, 4))
    inner = k.Model(inner_in, [L.Dense(4)(inner_in), L.Dense(4)(inner_in)], name="inner")
    y, z = inner(x)
    return k.Model(tokens, L.MultiHeadAttention(2, 3)(y, z))


def mha_nested_same_depth_readers(k, L):
    """Inside a nested model called on a masked tensor, a ``Dense`` reads the input at
    the depth of the MultiHeadAttention that removes its mask: in Keras 3 the order
    within that depth decides whether it sees the mask (refused)."""
    tokens = k.Input((6,), dtype="int32")
    x = L.Embedding(10, 4, mask_zero=True)(tokens)
    inner_in = k.Input((6, 4))
    attended = L.MultiHeadAttention(2, 2)(inner_in, inner_in)
    inner = k.Model(inner_in, L.Add()([attended, L.Dense(4)(inner_in)]), name="inner")
    y = inner(x)
    return k.Model(tokens, [y, L.Attention()([y, y])])


def attention_output_mask(k, L):
    """The attention layers' output mask (the query's; Keras 3 converts it with
    ``ops.convert_to_tensor``) read by the layers after them."""
    q_in, v_in = seqs(k, (5, 4), (6, 4))
    q, v = L.Masking()(q_in), L.Masking()(v_in)
    dot = L.Attention()([q, v])
    additive = L.AdditiveAttention()([q, v], use_causal_mask=True)
    return k.Model(
        [q_in, v_in],
        [L.GlobalAveragePooling1D()(dot), L.LSTM(3)(additive), L.Dense(2)(dot)],
    )


def mha_gate_window(k, L):
    q, v = seqs(k, (5, 4), (6, 4))
    return k.Model(
        [q, v],
        [
            L.MultiHeadAttention(2, 3, use_gate=True)(q, v),
            L.MultiHeadAttention(2, 3, sliding_window=2)(q, v),
            L.MultiHeadAttention(2, 3, sliding_window=2, dropout=0.1)(q, v, use_causal_mask=True),
        ],
    )


def mha_robust_masking(k, L):
    q_in, v_in = seqs(k, (5, 4), (6, 4))
    q, v = L.Masking()(q_in), L.Masking()(v_in)
    return k.Model([q_in, v_in], [L.MultiHeadAttention(2, 3, softmax_robust_masking=True)(q, v)])


MASKED = [rows_zeroed(), rows_zeroed(rows=(2, 4))]
TOKENS = ints(0, 6)

CASES = [
    Case("attention_dot", attention_dot),
    Case("attention_concat", attention_concat, inputs=[floats(0.5), floats(0.5)]),
    Case("attention_masked", attention_masked, inputs=MASKED),
    # Keras 3 fails on masked rank-4 inputs (a `where` that does not broadcast)
    Case(
        "attention_rank4",
        attention_rank4,
        inputs=[masked_steps(), masked_steps()],
        flavours=("tf_keras",),
    ),
    Case("attention_rank4_plain", attention_rank4_plain),
    Case("attention_embedding_mask", attention_embedding_mask, inputs=[TOKENS, TOKENS]),
    Case("mha_basic", mha_basic),
    Case("mha_scores_causal", mha_scores_causal),
    Case("mha_attention_mask", mha_attention_mask, inputs=[None, None, ints(0, 2)]),
    Case("mha_masked", mha_masked, inputs=MASKED),
    Case("mha_key_mask", mha_key_mask, inputs=[*MASKED, rows_zeroed(rows=(3,))]),
    Case("mha_embedding_self_attention", mha_embedding_self_attention, inputs=[ints(0, 3)]),
    Case("mha_attention_axes", mha_attention_axes),
    Case("transformer_block", transformer_block, inputs=[ints(0, 10)]),
    Case("transformer_block_masked", transformer_block_masked, inputs=[ints(0, 4)]),
    Case("transformer_encoder_masked", transformer_encoder_masked, inputs=[ints(0, 4)]),
    Case("mha_mask_removal_by_depth", mha_mask_removal_by_depth, inputs=[ints(0, 4)]),
    Case(
        "attention_after_mha_removed_the_mask",
        attention_after_mha_removed_the_mask,
        inputs=[ints(0, 4), ints(0, 4)],
    ),
    Case("mha_by_keyword", mha_by_keyword),
    Case(
        "mha_same_depth_readers",
        mha_same_depth_readers,
        inputs=[ints(0, 4)],
        flavours=("tf_keras",),
    ),
    Case(
        "mha_same_depth_readers_k3",
        mha_same_depth_readers,
        inputs=[ints(0, 4)],
        flavours=("keras3",),
        refused="within a depth",
    ),
    Case("attention_output_mask", attention_output_mask, inputs=MASKED),
    Case("mha_in_nested_model", mha_in_nested_model, inputs=[ints(0, 4)], flavours=("tf_keras",)),
    Case(
        "mha_in_nested_model_k3",
        mha_in_nested_model,
        inputs=[ints(0, 4)],
        flavours=("keras3",),
        refused="a nested model",
    ),
    Case("mha_nested_input_read_after", mha_nested_input_read_after, inputs=[ints(0, 4)]),
    Case("mha_after_nested_model", mha_after_nested_model, inputs=[ints(0, 4)]),
    Case(
        "mha_nested_same_depth_readers",
        mha_nested_same_depth_readers,
        inputs=[ints(0, 4)],
        flavours=("tf_keras",),
    ),
    Case(
        "mha_nested_same_depth_readers_k3",
        mha_nested_same_depth_readers,
        inputs=[ints(0, 4)],
        flavours=("keras3",),
        refused="within a depth",
    ),
    Case("mha_gate_window", mha_gate_window, flavours=("keras3",)),
    Case("mha_robust_masking", mha_robust_masking, inputs=MASKED, flavours=("tf_keras",)),
]
