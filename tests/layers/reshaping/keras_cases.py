"""The reshaping layers built by real Keras 3 (JAX) and tf_keras: every padding and
cropping form (int, symmetric pairs, asymmetric (before, after) pairs), both data
formats, unknown step/spatial sizes, nearest and bilinear upsampling, and a mask that
these layers drop."""

from oracle_case import Case, ints, masked_steps


def seq(k, shape, *layers):
    return k.Sequential([k.Input(shape), *layers])


CF = "channels_first"

CASES = [
    # ---- ZeroPadding ----------------------------------------------------------------
    Case(
        "zero_padding1d_int_then_pair",
        lambda k, L: seq(k, (5, 3), L.ZeroPadding1D(2), L.ZeroPadding1D((0, 3))),
    ),
    Case(
        "zero_padding1d_channels_first",
        lambda k, L: seq(k, (3, 5), L.ZeroPadding1D((1, 2), data_format=CF)),
        flavours=("keras3",),  # tf.keras's ZeroPadding1D has no data_format
    ),
    Case(
        "zero_padding2d_int_pair_pairs",
        lambda k, L: seq(
            k,
            (4, 5, 2),
            L.ZeroPadding2D(1),
            L.ZeroPadding2D((2, 0)),
            L.ZeroPadding2D(((1, 2), (3, 0))),
        ),
    ),
    Case(
        "zero_padding2d_channels_first_variable",
        lambda k, L: seq(k, (2, None, None), L.ZeroPadding2D(((0, 2), (1, 3)), data_format=CF)),
    ),
    Case(
        "zero_padding3d_forms",
        lambda k, L: seq(k, (3, 4, 2, 2), L.ZeroPadding3D(), L.ZeroPadding3D(((1, 0), (0, 2), 2))),
    ),
    Case(
        "zero_padding3d_channels_first",
        lambda k, L: seq(k, (2, 3, 4, 2), L.ZeroPadding3D((1, 2, 0), data_format=CF)),
    ),
    # ---- Cropping -------------------------------------------------------------------
    Case(
        "cropping1d_int_then_pair",
        lambda k, L: seq(k, (8, 3), L.Cropping1D(1), L.Cropping1D((2, 0)), L.Cropping1D((0, 1))),
    ),
    Case(
        "cropping1d_variable_length",
        lambda k, L: seq(k, (None, 3), L.Cropping1D((1, 2))),
    ),
    Case(
        "cropping2d_int_pair_pairs",
        lambda k, L: seq(
            k,
            (9, 8, 2),
            L.Cropping2D(1),
            L.Cropping2D((1, 0)),
            L.Cropping2D(((0, 2), (1, 0))),
        ),
    ),
    Case(
        "cropping2d_channels_first",
        lambda k, L: seq(k, (2, 7, 8), L.Cropping2D(((1, 2), (3, 0)), data_format=CF)),
    ),
    Case(
        "cropping3d_forms",
        lambda k, L: seq(k, (5, 6, 4, 2), L.Cropping3D(), L.Cropping3D(((1, 0), (0, 2), 0))),
    ),
    Case(
        "cropping3d_channels_first",
        lambda k, L: seq(k, (2, 5, 6, 4), L.Cropping3D(((0, 1), (2, 0), (1, 1)), data_format=CF)),
    ),
    # ---- UpSampling -----------------------------------------------------------------
    Case(
        "up_sampling1d_sizes",
        lambda k, L: seq(k, (4, 3), L.UpSampling1D(3), L.UpSampling1D()),
    ),
    Case(
        "up_sampling1d_variable_length",
        lambda k, L: seq(k, (None, 2), L.UpSampling1D(2)),
    ),
    Case(
        "up_sampling2d_nearest",
        lambda k, L: seq(k, (3, 4, 2), L.UpSampling2D((2, 3))),
    ),
    Case(
        "up_sampling2d_nearest_channels_first",
        lambda k, L: seq(k, (2, 3, 4), L.UpSampling2D(2, data_format=CF)),
    ),
    Case(
        "up_sampling2d_bilinear",
        lambda k, L: seq(k, (3, 4, 2), L.UpSampling2D((2, 3), interpolation="bilinear")),
    ),
    Case(
        "up_sampling2d_bilinear_channels_first",
        lambda k, L: seq(
            k, (2, 3, 5), L.UpSampling2D((3, 1), data_format=CF, interpolation="bilinear")
        ),
    ),
    # integer images: tf.keras answers in float32, Keras 3 rounds back to the integer
    # dtype (ties by its backend's arithmetic), refused
    Case(
        "up_sampling2d_bilinear_integers",
        lambda k, L: k.Sequential(
            [k.Input((3, 4, 2), dtype="int32"), L.UpSampling2D(2, interpolation="bilinear")]
        ),
        inputs=[ints(0, 255)],
        flavours=("tf_keras",),
    ),
    # float16 images: tf.image.resize answers float32 whatever the input's float dtype
    Case(
        "up_sampling2d_bilinear_float16",
        lambda k, L: seq(
            k, (3, 4, 2), L.UpSampling2D(2, interpolation="bilinear", dtype="float16")
        ),
        flavours=("tf_keras",),
    ),
    Case(
        "up_sampling2d_bilinear_integers_refused",
        lambda k, L: k.Sequential(
            [k.Input((3, 4, 2), dtype="uint8"), L.UpSampling2D(2, interpolation="bilinear")]
        ),
        flavours=("keras3",),
        refused="Keras 3 rounds bilinear results back",
    ),
    Case(
        "up_sampling2d_bilinear_variable",
        lambda k, L: seq(k, (None, None, 2), L.UpSampling2D(4, interpolation="bilinear")),
    ),
    Case(
        "up_sampling2d_bicubic_refused",
        lambda k, L: seq(k, (3, 4, 2), L.UpSampling2D(2, interpolation="bicubic")),
        refused="interpolation='bicubic', which has no exact ONNX form",
    ),
    Case(
        "up_sampling3d",
        lambda k, L: seq(k, (2, 3, 2, 2), L.UpSampling3D((2, 1, 3))),
    ),
    Case(
        "up_sampling3d_channels_first",
        lambda k, L: seq(k, (2, 2, 3, 2), L.UpSampling3D(2, data_format=CF)),
    ),
    # ---- masks: none of these layers carries one ------------------------------------
    Case(
        "masking_then_padding_drops_the_mask",
        lambda k, L: seq(
            k, (5, 3), L.Masking(), L.ZeroPadding1D(1), L.Cropping1D((0, 1)), L.UpSampling1D(2)
        ),
        inputs=[masked_steps()],
    ),
    # layers that return their input as it is, on a masked input: tf.keras drops the
    # mask; Keras 3 keeps it on JAX (the very tensor comes back) and drops it on
    # TensorFlow: refused
    *[
        case
        for name, layer in {
            "identity_permute": lambda L: L.Permute((1, 2)),
            "same_shape_reshape": lambda L: L.Reshape((-1, 3)),
            "cropping_nothing": lambda L: L.Cropping1D(0),
        }.items()
        for case in (
            Case(
                f"masking_then_{name}",
                lambda k, L, layer=layer: seq(k, (5, 3), L.Masking(), layer(L), L.LSTM(2)),
                inputs=[masked_steps()],
                flavours=("tf_keras",),
            ),
            Case(
                f"masking_then_{name}_refused",
                lambda k, L, layer=layer: seq(k, (5, 3), L.Masking(), layer(L), L.LSTM(2)),
                inputs=[masked_steps()],
                flavours=("keras3",),
                refused="returns its input unchanged here, on a masked input",
            ),
        )
    ],
    Case(
        "masking_then_permute_drops_the_mask",
        lambda k, L: seq(k, (5, 3), L.Masking(), L.Permute((2, 1)), L.LSTM(2)),
        inputs=[masked_steps()],
    ),
    # ---- Flatten, Reshape, Permute, RepeatVector -------------------------------------
    Case(
        "flatten_channels_first_reshape",
        lambda k, L: seq(k, (2, 3, 4), L.Flatten(data_format=CF), L.Reshape((4, -1))),
    ),
    Case(
        "permute_flatten_repeat_vector",
        lambda k, L: seq(k, (2, 3, 4), L.Permute((3, 1, 2)), L.Flatten(), L.RepeatVector(2)),
    ),
    # tf.keras and Keras 3 flatten what Keras 2.2 refused: unknown sizes, a flat input,
    # and a rank-1 one (a column)
    Case(
        "flatten_unknown_steps",
        lambda k, L: seq(k, (None, 3), L.Conv1D(2, 2), L.Flatten(data_format=CF)),
    ),
    Case("flatten_flat_input", lambda k, L: seq(k, (4,), L.Flatten(), L.Dense(2))),
    Case("flatten_rank_1_input", lambda k, L: seq(k, (), L.Flatten(), L.Dense(2))),
]
