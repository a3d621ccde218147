"""The core layers of the Keras 2.2 documentation, Conv2D and LSTM, and the ways models
are put together (nesting, sharing, several inputs and outputs), built by real Keras."""

from oracle_case import Case, masked_steps


def seq(k, shape, *layers):
    return k.Sequential([k.Input(shape), *layers])


def lstm_return_state(k, L):
    inp = k.Input((5, 3))
    out, h, c = L.LSTM(3, return_sequences=True, return_state=True)(inp)
    return k.Model(inp, [out, h, c])


def masked_lstm_state(k, L):
    inp = k.Input((5, 3))
    masked = L.Masking()(inp)
    out, h, c = L.LSTM(3, return_state=True)(masked)
    seqs = L.LSTM(2, return_sequences=True, go_backwards=True)(masked)
    return k.Model(inp, [out, h, c, seqs])


def masked_lstm_functional(k, L):
    inp = k.Input((5, 3))
    hidden = L.Dense(4, activation="tanh")(L.Masking()(inp))
    return k.Model(inp, L.LSTM(3, return_sequences=True)(hidden))


def two_in_two_out(k, L):
    a = k.Input((4,), name="a")
    b = k.Input((5, 3), name="b")
    out_a = L.Dense(2, activation="relu", name="out_a")(L.Dense(3)(a))
    out_b = L.LSTM(2, name="out_b")(L.Dense(3)(L.Masking()(b)))
    return k.Model([a, b], [out_a, out_b])


def nested_sequential(k, L):
    inner = k.Sequential([k.Input((4,)), L.Dense(3, activation="relu"), L.Dense(2)], name="inner")
    inp = k.Input((4,))
    return k.Model(inp, L.Dense(1)(inner(L.Dense(4, activation="tanh")(inp))))


def shared_two_inputs(k, L):
    a, b = k.Input((3,)), k.Input((3,))
    shared = L.Dense(2, activation="elu")
    return k.Model([a, b], [shared(a), shared(b)])


def shared_chain(k, L):
    inp = k.Input((3,))
    shared = L.Dense(3, activation="tanh")
    return k.Model(inp, L.Dense(2)(shared(shared(inp))))


def nested_functional(k, L):
    inner_in = k.Input((4,))
    inner = k.Model(inner_in, L.Dense(3, activation="relu")(inner_in), name="inner_fn")
    inp = k.Input((4,))
    return k.Model(inp, L.Dense(2)(inner(L.Dense(4)(inp))))


def nested_called_twice(kind):
    """A nested model called on two inputs, only its first call an output and its second
    one read by a layer: Keras 3 refers to the first as ``[inner, 1, 0]`` in
    ``output_layers`` (from 1 there) and to the second as ``[inner, 1, 0]`` in the Dense's
    call (from 0), tf.keras to both from 1."""

    def build(k, L):
        if kind == "functional":
            inner_in = k.Input((4,))
            inner = k.Model(inner_in, L.Dense(3, activation="tanh")(inner_in), name="inner")
        else:
            inner = k.Sequential([k.Input((4,)), L.Dense(3, activation="tanh")], name="inner")
        a, b = k.Input((4,), name="a"), k.Input((4,), name="b")
        first, second = inner(a), inner(b)
        return k.Model([a, b], [first, L.Dense(2, name="head")(second)])

    return build


def nested_called_three_times(k, L):
    """Its second call an output, its first and third read by layers."""
    inner_in = k.Input((4,))
    inner = k.Model(inner_in, L.Dense(3, activation="tanh")(inner_in), name="inner")
    a, b = k.Input((4,), name="a"), k.Input((4,), name="b")
    first, second, third = inner(a), inner(b), inner(L.Dense(4, name="pre")(a))
    return k.Model([a, b], [second, L.Dense(2, name="h1")(first), L.Dense(2, name="h3")(third)])


def sequential_in_sequential(k, L):
    inner = k.Sequential([k.Input((4,)), L.Dense(3, activation="selu")], name="inner")
    return k.Sequential([k.Input((5,)), L.Dense(4), inner, L.Dense(2)])


def built_without_input(k, L):
    model = k.Sequential([L.Dense(3, activation="relu"), L.Dense(2)])
    model.build((None, 4))
    return model


def frozen_lstm_without_bias(k, L):
    model = seq(k, (5, 3), L.LSTM(3, use_bias=False, return_sequences=True), L.Dense(2))
    model.layers[0].trainable = False
    return model


def spatial_dropout2d(k, L):
    return seq(
        k,
        (2, 4, 4),
        L.SpatialDropout2D(0.5, data_format="channels_first"),
        L.Conv2D(2, 2, data_format="channels_first"),
    )


def flatten_after_cf_conv(data_format):
    return lambda k, L: seq(
        k,
        (2, 5, 5),
        L.Conv2D(3, 2, data_format="channels_first"),
        L.Flatten(data_format=data_format),
        L.Dense(2),
    )


MASKED = [masked_steps()]
CASES = [
    Case("dense_rank2", lambda k, L: seq(k, (5,), L.Dense(3))),
    Case("dense_rank3", lambda k, L: seq(k, (4, 5), L.Dense(3, activation="tanh"))),
    Case(
        "activation_layers",
        lambda k, L: seq(
            k, (4, 5), L.Activation("hard_sigmoid"), L.Dense(3), L.Activation("softmax")
        ),
    ),
    Case("dropout", lambda k, L: seq(k, (5,), L.Dense(4), L.Dropout(0.5), L.Dense(2))),
    Case("spatial_dropout1d", lambda k, L: seq(k, (4, 3), L.SpatialDropout1D(0.5), L.Dense(2))),
    Case("spatial_dropout2d", spatial_dropout2d),
    Case(
        "spatial_dropout3d",
        lambda k, L: seq(k, (2, 3, 3, 2), L.SpatialDropout3D(0.3), L.Flatten(), L.Dense(2)),
    ),
    Case("flatten_channels_first_after_cf_conv", flatten_after_cf_conv("channels_first")),
    Case("flatten_channels_last_after_cf_conv", flatten_after_cf_conv("channels_last")),
    Case(
        "flatten_channels_last",
        lambda k, L: seq(k, (5, 5, 2), L.Conv2D(3, 2), L.Flatten(), L.Dense(2)),
    ),
    Case("reshape_minus_one", lambda k, L: seq(k, (4, 6), L.Reshape((-1, 3)), L.Dense(2))),
    Case("permute", lambda k, L: seq(k, (3, 4, 2), L.Permute((3, 1, 2)), L.Dense(2))),
    Case(
        "repeat_vector",
        lambda k, L: seq(k, (3,), L.RepeatVector(4), L.LSTM(2, return_sequences=True)),
    ),
    Case(
        "activity_regularization",
        lambda k, L: seq(k, (4,), L.ActivityRegularization(l1=0.1, l2=0.2), L.Dense(2)),
    ),
    Case(
        "masking_dense",
        lambda k, L: seq(k, (5, 3), L.Masking(), L.Dense(2), L.Activation("relu")),
        inputs=MASKED,
    ),
    Case(
        "masking_then_flatten",
        lambda k, L: seq(k, (5, 3), L.Masking(), L.Flatten(), L.Dense(2)),
        inputs=MASKED,
    ),
    Case(
        "conv2d_strides_same",
        lambda k, L: seq(k, (7, 7, 2), L.Conv2D(3, 3, strides=2, padding="same")),
    ),
    Case(
        "conv2d_valid_dilation",
        lambda k, L: seq(k, (8, 8, 2), L.Conv2D(3, 3, dilation_rate=2, padding="valid")),
    ),
    Case(
        "conv2d_same_dilation_rect",
        lambda k, L: seq(
            k,
            (7, 6, 2),
            L.Conv2D(2, (3, 2), dilation_rate=(2, 1), padding="same", activation="relu"),
        ),
    ),
    Case(
        "conv2d_channels_first_strided",
        lambda k, L: seq(
            k,
            (2, 7, 7),
            L.Conv2D(3, 3, strides=(2, 1), padding="same", data_format="channels_first"),
        ),
    ),
    Case("conv2d_no_bias", lambda k, L: seq(k, (6, 6, 3), L.Conv2D(4, 2, use_bias=False))),
    Case("lstm_last", lambda k, L: seq(k, (5, 3), L.LSTM(4))),
    Case("lstm_sequences", lambda k, L: seq(k, (5, 3), L.LSTM(4, return_sequences=True))),
    Case(
        "lstm_go_backwards",
        lambda k, L: seq(k, (5, 3), L.LSTM(3, go_backwards=True, return_sequences=True)),
    ),
    Case(
        "lstm_hard_sigmoid",
        lambda k, L: seq(k, (5, 3), L.LSTM(3, recurrent_activation="hard_sigmoid")),
    ),
    Case("lstm_return_state", lstm_return_state),
    Case(
        "masking_lstm_sequential",
        lambda k, L: seq(k, (5, 3), L.Masking(), L.LSTM(3, return_sequences=True)),
        inputs=MASKED,
    ),
    Case(
        "masking_lstm_last_sequential",
        lambda k, L: seq(k, (5, 3), L.Masking(), L.LSTM(3)),
        inputs=MASKED,
    ),
    Case("masking_lstm_functional", masked_lstm_functional, inputs=MASKED),
    Case("masking_lstm_state_backwards", masked_lstm_state, inputs=MASKED),
    Case("two_inputs_two_outputs", two_in_two_out, inputs=[None, masked_steps()]),
    Case("nested_sequential", nested_sequential),
    Case("shared_layer_two_inputs", shared_two_inputs),
    Case("shared_layer_chain", shared_chain),
    Case("nested_functional", nested_functional),
    Case("nested_functional_called_twice", nested_called_twice("functional")),
    Case("nested_sequential_called_twice", nested_called_twice("sequential")),
    Case("nested_functional_called_three_times", nested_called_three_times),
    Case("sequential_in_sequential", sequential_in_sequential),
    Case("sequential_built_without_input", built_without_input),
    Case("frozen_lstm_without_bias", frozen_lstm_without_bias),
]
