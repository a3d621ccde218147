"""How layers are called in real models: initial states, explicit masks, fixed batches."""

import numpy as np
from oracle_case import Case, floats, ints, masked_steps


def seq2seq(k, L, masked_decoder=True):
    """A keras.io-style encoder-decoder: the encoder's final states start the decoder."""
    encoder_in = k.Input((6, 3), name="encoder_in")
    decoder_in = k.Input((5, 2), name="decoder_in")
    _, h, c = L.LSTM(4, return_state=True)(L.Masking()(encoder_in))
    decoder = L.Masking()(decoder_in) if masked_decoder else decoder_in
    sequence = L.LSTM(4, return_sequences=True)(decoder, initial_state=[h, c])
    return k.Model([encoder_in, decoder_in], L.Dense(2)(sequence))


def states_as_inputs(k, L):
    """A decoder step model whose states come from the client (inference loops)."""
    x = k.Input((4, 3), name="tokens")
    h0 = k.Input((5,), name="h0")
    c0 = k.Input((5,), name="c0")
    out, h, c = L.LSTM(5, return_sequences=True, return_state=True)(x, initial_state=[h0, c0])
    return k.Model([x, h0, c0], [out, h, c])


def states_as_inputs_masked(k, L):
    x = k.Input((6, 3), name="tokens")
    h0 = k.Input((5,), name="h0")
    c0 = k.Input((5,), name="c0")
    out, h, c = L.LSTM(5, return_state=True, go_backwards=True)(
        L.Masking()(x), initial_state=[h0, c0]
    )
    return k.Model([x, h0, c0], [out, h, c])


def explicit_ops_mask(k, L):
    """Keras 3: a mask computed with keras.ops and passed with `mask=`."""
    tokens = k.Input((7,), dtype="int32", name="tokens")
    embedded = L.Embedding(10, 4)(tokens)
    padding = k.ops.not_equal(tokens, 3)
    return k.Model(tokens, L.LSTM(3, return_sequences=True)(embedded, mask=padding))


def int_float_comparisons(k, L):
    """Keras 3 compares an integer tensor with a float tensor, or with a float constant,
    in float32: there 2**24 + 1 equals 2**24 (NumPy would compare in float64)."""
    counts = k.Input((6,), dtype="int32", name="counts")
    limits = k.Input((6,), name="limits")
    return k.Model(
        [counts, limits],
        [k.ops.equal(counts, limits), k.ops.greater(counts, 16777216.5)],
    )


def int8_against_200(k, L):
    """JAX wraps 200 into int8 (-56), TensorFlow compares it in int32."""
    x = k.Input((4,), dtype="int8")
    return k.Model(x, k.ops.greater(x, 200))


def float16_against_a_tenth(k, L):
    """JAX rounds 0.1 to float16, TensorFlow compares in float32."""
    x = k.Input((4,), dtype="float16")
    return k.Model(x, k.ops.less_equal(x, 0.1))


def float16_input(k, L):
    """tf.keras and Keras 3 cast a float16 input to each float32 layer's dtype before
    the call (autocast): the layers compute, and answer, in float32."""
    x = k.Input((4, 4, 3), dtype="float16")
    y = L.AveragePooling2D(2)(L.UpSampling2D(2, interpolation="bilinear")(x))
    return k.Model(x, L.Reshape((-1,))(L.Softmax()(L.ReLU()(y))))


def float16_masked_input(k, L):
    x = k.Input((6, 3), dtype="float16")
    return k.Model(x, L.LSTM(4)(L.Masking()(x)))


def explicit_none_masks(k, L):
    """`mask=None` / `mask=[None, None]` given by hand: the call runs unmasked, and in
    tf.keras and Keras 3 the output carries no mask either (the LSTMs after read none);
    Keras 3 reads a plain None as "the inputs' masks"."""
    tokens = k.Input((7,), dtype="int32", name="tokens")
    embedded = L.Embedding(10, 4, mask_zero=True)(tokens)
    sequence = L.LSTM(3, return_sequences=True)(embedded, mask=None)
    attended = L.Attention()([embedded, embedded], mask=[None, None])
    plain = L.Attention()([embedded, embedded], mask=None)
    return k.Model(tokens, [L.LSTM(2)(sequence), L.LSTM(2)(attended), L.LSTM(2)(plain)])


def fixed_batch(k, L):
    """A Sequential built by calling it on data: its InputLayer records batch 32."""
    model = k.Sequential([L.Dense(4, activation="relu"), L.Dense(2)])
    model(np.zeros((32, 5), "float32"))
    return model


def fixed_batch_functional(k, L):
    x = k.Input(batch_shape=(16, 6, 3))
    y = L.LSTM(3)(L.Masking()(x))
    return k.Model(x, L.Dense(2)(y))


def recorded_training(k, L):
    """Keras 3 records `training=True` (Monte-Carlo dropout, and the augmentation layers,
    whose call defaults to it) but replaces it with the model call's: predict is
    deterministic, and so is layerserve."""
    x = k.Input((6, 6, 2))
    flipped = L.RandomFlip("horizontal")(x)
    hidden = L.Dense(4)(L.Flatten()(flipped))
    return k.Model(x, L.Dense(2)(L.Dropout(0.5)(hidden, training=True)))


def unused_input(k, L):
    """A model with an input no output reads (kept for a client's fixed signature)."""
    used, spare = k.Input((3,), name="used"), k.Input((2,), name="spare")
    return k.Model([used, spare], L.Dense(2)(used))


CASES = [
    Case("seq2seq_masked", seq2seq, inputs=[masked_steps(), masked_steps()]),
    Case(
        "seq2seq_unmasked_decoder",
        lambda k, L: seq2seq(k, L, masked_decoder=False),
        inputs=[masked_steps(), floats()],
    ),
    Case("states_as_inputs", states_as_inputs),
    Case("states_as_inputs_masked", states_as_inputs_masked, inputs=[masked_steps(fraction=0.4)]),
    Case("explicit_ops_mask", explicit_ops_mask, inputs=[ints(0, 10)], flavours=("keras3",)),
    Case(
        "int_float_comparisons",
        int_float_comparisons,
        inputs=[ints(2**24 - 4, 2**24 + 4), ints(2**24 - 4, 2**24 + 4)],
        flavours=("keras3",),
    ),
    Case("int8_against_200", int8_against_200, flavours=("keras3",), refused="out of int8's range"),
    Case(
        "float16_against_a_tenth",
        float16_against_a_tenth,
        flavours=("keras3",),
        refused="float16 does not hold the constant 0.1",
    ),
    Case("float16_input", float16_input, inputs=[floats(scale=3.0)]),
    Case("float16_masked_input", float16_masked_input, inputs=[masked_steps()]),
    Case("explicit_none_masks", explicit_none_masks, inputs=[ints(0, 10)]),
    Case("fixed_batch_sequential", fixed_batch),
    Case("keras3_recorded_training", recorded_training, flavours=("keras3",)),
    Case("fixed_batch_functional", fixed_batch_functional, inputs=[masked_steps()]),
    Case("unused_input", unused_input),
]
