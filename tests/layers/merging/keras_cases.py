"""Merging layers built by real Keras (3 on JAX, and tf_keras).

Most cases return several outputs, so one file covers many argument combinations.
Broadcasting cases use a sequence length of 7, the oracle's batch size: NumPy's own
(leading) alignment of ``(N, C)`` with ``(N, T, C)`` would then run and give wrong
numbers, where Keras inserts the size-1 axis after the batch axis.

Masked cases put ``Masking()`` on sequence inputs whose zeroed steps differ per input:
tf_keras ANDs the masks present, Keras 3.15 ORs them (none when an input has no mask)
and uses them in the values of Maximum, Minimum and Multiply.
"""

from oracle_case import Case, floats, ints


def inputs(k, *shapes):
    return [k.Input(shape) for shape in shapes]


def zero_steps(fraction=0.5, inner=None):
    """Sequences (axis 1) with about ``fraction`` of the steps all zeros, drawn per
    input, so that two masked inputs overlap on some steps and not on others."""
    inner = inner or floats()

    def make(rng, shape, dtype):
        array = inner(rng, shape, dtype)
        array[rng.random(shape[:2]) < fraction] = 0
        return array

    return make


def elementwise_broadcast(k, L):
    """Lower ranks: (N, 5) against (N, 7, 5), and a size-1 axis (N, 7, 1)."""
    a, b, c = inputs(k, (7, 5), (5,), (7, 1))
    return k.Model(
        [a, b, c],
        [
            L.Add()([a, b, c]),
            L.Subtract()([b, a]),
            L.Multiply()([a, c, b]),
            L.Average()([b, a]),
            L.Maximum()([a, b]),
            L.Minimum()([c, a, b]),
        ],
    )


def elementwise_same_shape(k, L):
    """Two and three inputs of one shape, behind Dense layers (weights drawn)."""
    a, b = inputs(k, (4,), (3,))
    x, y, z = L.Dense(6)(a), L.Dense(6)(b), L.Dense(6, activation="tanh")(a)
    return k.Model(
        [a, b],
        [
            L.Add()([x, y]),
            L.Subtract()([x, y]),
            L.Multiply()([x, y, z]),
            L.Average()([x, y, z]),
            L.Maximum()([x, y, z]),
            L.Minimum()([x, y]),
        ],
    )


def concatenations(k, L):
    a, b, c = inputs(k, (3, 4), (2, 4), (3, 2))
    return k.Model(
        [a, b, c],
        [
            L.Concatenate(axis=1)([a, b]),
            L.Concatenate()([a, c, a]),
            L.Concatenate(axis=-2)([b, a, b]),
            L.Concatenate(axis=2)([c, a]),
        ],
    )


def concatenate_rank4(k, L):
    a, b = inputs(k, (2, 3, 4), (2, 1, 4))
    return k.Model([a, b], [L.Concatenate(axis=2)([a, b]), L.Concatenate(axis=-3)([a, a])])


def dots(k, L):
    """Integer, negative and pair axes; rank 2, 3 and 4; normalize on some."""
    v, w, s, t, q = inputs(k, (6,), (6,), (3, 5), (4, 3), (2, 3, 5))
    return k.Model(
        [v, w, s, t, q],
        [
            L.Dot(axes=1)([v, w]),
            L.Dot(axes=1, normalize=True)([v, w]),
            L.Dot(axes=(1, 2))([s, t]),
            L.Dot(axes=(-2, -1), normalize=True)([s, t]),
            L.Dot(axes=-1)([t, t]),
            L.Dot(axes=(3, 2))([q, s]),
            L.Dot(axes=(2, 1), normalize=True)([q, s]),
            L.Dot(axes=(1, 2))([v, L.Dense(6)(s)]),
            L.Dot(axes=(2, 1))([L.Dense(6)(t), w]),
        ],
    )


def dot_tiny_norms(k, L):
    """Vectors of norm ~1e-8: the floor of the norm decides the cosine (Keras 3: 1e-7,
    Keras 2: 1e-6), so the two flavours disagree here and each must be matched."""
    v, w, s = inputs(k, (4,), (4,), (3, 4))
    return k.Model(
        [v, w, s],
        [L.Dot(axes=1, normalize=True)([v, w]), L.Dot(axes=-1, normalize=True)([s, v])],
    )


def masked_elementwise(k, L):
    """Every element-wise merge of two and three masked inputs, and of a masked with an
    unmasked one (Keras 3: no mask; Keras 2: the mask present)."""
    a, b, c = inputs(k, (6, 3), (6, 3), (6, 3))
    ma, mb, mc = L.Masking()(a), L.Masking()(b), L.Masking()(c)
    return k.Model(
        [a, b, c],
        [
            L.Add()([ma, mb]),
            L.Subtract()([ma, mb]),
            L.Multiply()([ma, mb, mc]),
            L.Average()([ma, mb, mc]),
            L.Maximum()([ma, mb]),
            L.Minimum()([ma, mb, mc]),
            L.Maximum()([ma, c]),
            L.Multiply()([c, mb]),
            L.Add()([ma, c, mb]),
        ],
    )


def masked_concatenations(k, L):
    a, b, c = inputs(k, (6, 3), (6, 2), (4, 3))
    ma, mb, mc = L.Masking()(a), L.Masking()(b), L.Masking()(c)
    return k.Model(
        [a, b, c],
        [
            L.Concatenate()([ma, mb]),
            L.Concatenate(axis=1)([ma, mc]),
            L.Concatenate(axis=-2)([mc, ma, mc]),
            L.Concatenate()([ma, b]),
            L.Dot(axes=(2, 2))([ma, mc]),
        ],
    )


def masked_broadcast_values(k, L):
    """A masked (N, 6, 3) input merged with an unmasked (N, 1, 3) one, and with a masked
    (N, 6, 1) one: Keras 3.15 substitutes masked values before Maximum/Multiply/Minimum
    even when the output has no mask."""
    a, b, c = inputs(k, (6, 3), (1, 3), (6, 1))
    ma, mc = L.Masking()(a), L.Masking()(c)
    return k.Model(
        [a, b, c],
        [
            L.Maximum()([ma, b]),
            L.Minimum()([b, ma]),
            L.Multiply()([mc, ma]),
            L.Add()([ma, mc]),
        ],
    )


def masked_mixed_mask_shapes(k, L):
    """Masks of shapes (N, 6) and (N, 1) broadcast in Keras 3 (tf_keras cannot build
    this model: it stacks the masks), and Concatenate along the steps with an unmasked
    input of 3 features (tf_keras's all-True piece would not fit its (N, T, 1) pieces)."""
    a, b, c = inputs(k, (6, 3), (1, 3), (4, 3))
    ma, mb, mc = L.Masking()(a), L.Masking()(b), L.Masking()(c)
    return k.Model(
        [a, b, c],
        [
            L.Multiply()([ma, mb]),
            L.Minimum()([mb, ma]),
            L.Maximum()([ma, mb, ma]),
            L.Concatenate(axis=1)([c, ma, mc]),
            L.Concatenate(axis=1)([ma, b]),
        ],
    )


def embedding_masks(k, L):
    """Masks from ``Embedding(mask_zero=True)`` (index 0 is masked) on two sequences."""
    a, b = (k.Input((5,), dtype="int32") for _ in range(2))
    ea, eb = L.Embedding(6, 3, mask_zero=True)(a), L.Embedding(6, 3, mask_zero=True)(b)
    return k.Model(
        [a, b],
        [
            L.Multiply()([ea, eb]),
            L.Minimum()([eb, ea]),
            L.Concatenate(axis=1)([ea, eb]),
            L.Concatenate()([ea, eb]),
            L.Average()([ea, eb]),
        ],
    )


def masked_merge_then_lstm(k, L):
    """The merged mask reaches an LSTM, which skips the masked steps (Keras 3 records
    that mask in the file as LogicalOr/NotEqual/Any op nodes)."""
    a, b = inputs(k, (6, 3), (6, 3))
    merged = L.Add()([L.Masking()(a), L.Masking()(b)])
    return k.Model([a, b], L.LSTM(4, return_sequences=True)(merged))


MASKED = [zero_steps(), zero_steps(), zero_steps()]

CASES = [
    Case("elementwise_broadcast", elementwise_broadcast),
    Case("elementwise_same_shape", elementwise_same_shape),
    Case("concatenations", concatenations),
    Case("concatenate_rank4", concatenate_rank4),
    Case("dots", dots),
    Case("dot_tiny_norms", dot_tiny_norms, inputs=[floats(1e-8)] * 3),
    Case("masked_elementwise", masked_elementwise, inputs=MASKED),
    Case("masked_concatenations", masked_concatenations, inputs=MASKED),
    Case("masked_broadcast_values", masked_broadcast_values, inputs=MASKED),
    Case(
        "masked_mixed_mask_shapes",
        masked_mixed_mask_shapes,
        inputs=MASKED,
        flavours=("keras3",),
    ),
    Case("embedding_masks", embedding_masks, inputs=[ints(0, 3), ints(0, 3)]),
    Case("masked_merge_then_lstm", masked_merge_then_lstm, inputs=MASKED[:2]),
]
