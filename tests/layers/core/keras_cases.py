"""Embedding, Identity and EinsumDense built by real Keras 3 (JAX) and tf_keras."""

from oracle_case import Case, ints


def fractional_indices(high):
    """Indices with fractional parts (2.75 selects row 2) and some exact zeros: Keras
    truncates floats toward zero but masks on the uncast value (0.25 is not padding)."""

    def make(rng, shape, dtype):
        whole = rng.integers(0, high, shape)
        return (whole + rng.choice([0.0, 0.25, 0.75], shape) * (whole < high - 1)).astype(dtype)

    return make


def embedding_mask_identity(k, L):
    tokens = k.Input((6,), dtype="int32")
    embedded = L.Embedding(12, 4, mask_zero=True)(tokens)
    return k.Model(tokens, L.Identity()(embedded))  # Keras 3 keeps the mask, tf.keras drops it


def embedding_options(k, L):
    options = {
        "embeddings_initializer": "glorot_uniform",
        "embeddings_regularizer": "l2",
        "embeddings_constraint": "non_neg",
        "activity_regularizer": "l1",
    }
    tokens = k.Input((2, 3), dtype="int64")
    return k.Model(tokens, L.Embedding(7, 5, **options)(tokens))


def einsum_dense(k, L):
    """EinsumDense: plain, with heads, ellipsis on the left and on the right."""
    a, b, c = k.Input((3,)), k.Input((5, 3)), k.Input((5, 2, 3))
    return k.Model(
        [a, b, c],
        [
            L.EinsumDense("ab,bc->ac", 4, bias_axes="c", activation="relu")(a),
            L.EinsumDense("abc,cd->abd", (None, 4), bias_axes="d")(b),
            L.EinsumDense("abc,cde->abde", (5, 2, 3), bias_axes="de")(b),
            L.EinsumDense("...b,bc->...c", 4, bias_axes="c", activation="tanh")(c),
            L.EinsumDense("abc...,cd->abd...", (5, 4), bias_axes="d")(c),
            L.EinsumDense("abc,dc->abd", (5, 2))(b),
        ],
    )


CASES = [
    Case(
        "embedding_mask_zero_int",
        lambda k, L: k.Sequential(
            [k.Input((6,), dtype="int32"), L.Embedding(12, 4, mask_zero=True)]
        ),
        inputs=[ints(0, 12)],
    ),
    Case(
        "embedding_float_input_fractional",
        lambda k, L: k.Sequential([k.Input((5,)), L.Embedding(9, 3, mask_zero=True)]),
        inputs=[fractional_indices(9)],
    ),
    Case("embedding_options_rank3", embedding_options, inputs=[ints(0, 7)]),
    Case(
        "embedding_input_length",
        lambda k, L: k.Sequential([L.Embedding(10, 3, input_length=4)]),
        inputs=[ints(0, 10)],
        flavours=("tf_keras",),
    ),
    Case(
        "embedding_input_length_list",
        lambda k, L: k.Sequential(
            [k.Input((2, 3), dtype="int32"), L.Embedding(10, 3, input_length=[2, None])]
        ),
        inputs=[ints(0, 10)],
        flavours=("tf_keras",),
    ),
    Case(
        "embedding_negative_indices_wrap",
        lambda k, L: k.Sequential([k.Input((6,), dtype="int32"), L.Embedding(8, 3)]),
        inputs=[ints(-8, 8)],
        flavours=("keras3",),
    ),
    Case("embedding_mask_identity", embedding_mask_identity, inputs=[ints(0, 12)]),
    Case(
        "identity_floats",
        lambda k, L: k.Sequential([k.Input((3, 2)), L.Identity(), L.Dense(2)]),
    ),
    Case("einsum_dense", einsum_dense),
    # tf.keras records a TensorFlow function applied to a tensor as an operation layer,
    # each inbound node a bare reference: refused naming the class, which layerserve lacks
    Case(
        "tf_op_layer_multiply",
        lambda k, L: k.Model(x := k.Input((4,)), L.Dense(3)(x) * 2.0),
        flavours=("tf_keras",),
        refused="'TFOpLambda'",  # named by load_model and by the service's refusal
    ),
    Case(
        "tf_op_layer_slice",
        lambda k, L: k.Model(x := k.Input((4,)), L.Dense(3)(x)[:, 1:3]),
        flavours=("tf_keras",),
        refused="'SlicingOpLambda'",
    ),
    # Keras 3 records `e + e` as an Add operation, which drops the Embedding's mask; its
    # legacy .h5 writes no module, and the Add layer (which would carry the mask) must
    # not stand in for it: refused in every format
    Case(
        "keras3_add_operation_of_a_masked_tensor",
        lambda k, L: k.Model(
            x := k.Input((5,), dtype="int32"),
            L.GlobalAveragePooling1D()((e := L.Embedding(6, 3, mask_zero=True)(x)) + e),
        ),
        flavours=("keras3",),
        refused="'Add'",  # load_model: unknown Keras operation; the upload names it too
    ),
]
