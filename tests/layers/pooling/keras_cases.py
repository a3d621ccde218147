"""Pooling layers built by real Keras (3 on JAX, and tf_keras).

Most cases feed one input to several pools and return every output, so one file covers
many argument combinations. Sizes are odd where it matters: the SAME padding of those
pools is asymmetric (the odd cell at the end), and 'valid' windows leave a remainder.
"""

from oracle_case import Case, floats, ints, no_timesteps


def fan(k, shape, *layers, head=()):
    """``Input(shape)``, then the ``head`` layers in a chain, then each of ``layers`` on
    that tensor; one model output per layer."""
    x = inputs = k.Input(shape)
    for layer in head:
        x = layer(x)
    return k.Model(inputs, [layer(x) for layer in layers])


def mask_patterns(inner=None):
    """Sequences (axis 1) zeroed at chosen steps, so that ``Masking()`` masks them: per row,
    leading, interior and trailing steps, every step (a fully masked row), no step, a
    mixture, and all but one step."""
    inner = inner or floats()

    def make(rng, shape, dtype):
        array = inner(rng, shape, dtype)
        steps = shape[1]
        patterns = [
            [0, 1],
            [steps // 2 - 1, steps // 2],
            [steps - 1],
            list(range(steps)),
            [],
            [0, steps // 2, steps - 1],
            list(range(steps - 1)),
        ]
        for row in range(shape[0]):
            array[row, patterns[row % len(patterns)]] = 0
        return array

    return make


def exp_of_masked(k, L):
    """Dense(exponential) is finite at real steps and +inf at masked ones (which Masking
    set to 0): Keras 3 selects the unmasked steps with where, tf.keras multiplies by the
    mask and inf * 0 = NaN leaks into every row with a masked step."""
    dense = L.Dense(
        2,
        activation="exponential",
        kernel_initializer=k.initializers.Constant(-30.0),
        bias_initializer=k.initializers.Constant(90.0),
    )
    return fan(k, (6, 3), L.GlobalAveragePooling1D(), head=(L.Masking(), dense))


CF = {"data_format": "channels_first"}

CASES = [
    Case(
        "pool1d_channels_last",
        lambda k, L: fan(
            k,
            (9, 3),
            L.MaxPooling1D(),
            L.MaxPooling1D(4, strides=3, padding="same"),
            L.MaxPooling1D(3, padding="same"),
            L.AveragePooling1D(3, strides=2, padding="same"),
            L.AveragePooling1D(4, strides=1, padding="same"),
            L.AveragePooling1D(2, strides=3),
        ),
    ),
    Case(
        "pool1d_channels_first",
        lambda k, L: fan(
            k,
            (3, 8),
            L.MaxPooling1D(3, strides=2, padding="same", **CF),
            L.AveragePooling1D(4, strides=1, padding="same", **CF),
            L.AveragePooling1D(3, **CF),
        ),
    ),
    Case(
        "pool1d_variable_length",
        lambda k, L: fan(
            k,
            (None, 4),
            L.MaxPooling1D(3, strides=2, padding="same"),
            L.AveragePooling1D(4, strides=1, padding="same"),
            L.AveragePooling1D(1, strides=2, padding="same"),
            L.AveragePooling1D(2),
            L.GlobalMaxPooling1D(),
            L.GlobalAveragePooling1D(),
        ),
    ),
    Case(
        "pool1d_same_stride_above_pool_variable_length",
        lambda k, L: fan(k, (None, 3), L.AveragePooling1D(2, strides=3, padding="same")),
        export_refused="a stride larger than the pool along an axis of unknown length",
    ),
    Case(
        "pool2d_channels_last",
        lambda k, L: fan(
            k,
            (7, 6, 3),
            L.MaxPooling2D(),
            L.MaxPooling2D((3, 2), strides=(2, 1), padding="same"),
            L.AveragePooling2D(3, strides=2, padding="same"),
            L.AveragePooling2D((2, 3), strides=(1, 2)),
        ),
    ),
    Case(
        "pool2d_channels_first",
        lambda k, L: fan(
            k,
            (3, 7, 6),
            L.MaxPooling2D(3, strides=2, padding="same", **CF),
            L.AveragePooling2D((4, 3), strides=(1, 2), padding="same", **CF),
            L.AveragePooling2D(2, **CF),  # Keras 3 average pools have no default size
        ),
    ),
    Case(
        "pool3d_channels_last",
        lambda k, L: fan(
            k,
            (5, 6, 4, 2),
            L.MaxPooling3D(),
            L.MaxPooling3D((3, 2, 2), strides=(2, 1, 2), padding="same"),
            L.AveragePooling3D((2, 3, 2), strides=(1, 2, 1), padding="same"),
            L.AveragePooling3D(2, strides=(1, 1, 2)),
        ),
    ),
    Case(
        "pool3d_channels_first",
        lambda k, L: fan(
            k,
            (2, 5, 6, 4),
            L.MaxPooling3D(2, strides=1, padding="same", **CF),
            L.AveragePooling3D(3, strides=2, padding="same", **CF),
        ),
    ),
    Case(
        "global1d",
        lambda k, L: fan(
            k,
            (6, 3),
            L.GlobalMaxPooling1D(),
            L.GlobalAveragePooling1D(),
            L.GlobalMaxPooling1D(keepdims=True),
            L.GlobalAveragePooling1D(keepdims=True),
            L.GlobalMaxPooling1D(**CF),
            L.GlobalAveragePooling1D(keepdims=True, **CF),
        ),
    ),
    Case(
        "global2d",
        lambda k, L: fan(
            k,
            (5, 4, 3),
            L.GlobalMaxPooling2D(),
            L.GlobalAveragePooling2D(keepdims=True),
            L.GlobalMaxPooling2D(keepdims=True, **CF),
            L.GlobalAveragePooling2D(**CF),
        ),
    ),
    Case(
        "global3d",
        lambda k, L: fan(
            k,
            (3, 4, 5, 2),
            L.GlobalMaxPooling3D(keepdims=True),
            L.GlobalAveragePooling3D(),
            L.GlobalMaxPooling3D(**CF),
            L.GlobalAveragePooling3D(keepdims=True, **CF),
        ),
    ),
    Case(
        # A square input, so that the channels_first layer can take the (batch, 6) mask
        # too (Keras expands it along the features axis).
        "masking_global_average1d",
        lambda k, L: fan(
            k,
            (6, 6),
            L.GlobalAveragePooling1D(),
            L.GlobalAveragePooling1D(keepdims=True),
            L.GlobalAveragePooling1D(**CF),
            head=(L.Masking(),),
        ),
        inputs=[mask_patterns()],
    ),
    Case(
        "masking_global_average1d_infinite_masked_steps",
        exp_of_masked,
        inputs=[mask_patterns(floats(scale=0.2, offset=1.0))],
        weights="keep",
    ),
    Case(
        # Every other pool drops the mask (Keras 3 warns, tf.keras says nothing).
        "masking_dropped_by_other_pools",
        lambda k, L: fan(
            k,
            (6, 3),
            L.MaxPooling1D(2),
            L.AveragePooling1D(3, strides=1, padding="same"),
            L.GlobalMaxPooling1D(),
            head=(L.Masking(),),
        ),
        inputs=[mask_patterns()],
    ),
    Case(
        # The mask of Embedding(mask_zero=True): index 0 marks padding.
        "embedding_mask_zero_global_average1d",
        lambda k, L: fan(
            k,
            (6,),
            L.GlobalAveragePooling1D(),
            L.GlobalAveragePooling1D(keepdims=True),
            head=(L.Embedding(10, 3, mask_zero=True),),
        ),
        inputs=[mask_patterns(ints(1, 10))],
    ),
    # A maximum over no steps: Keras 3 fails, tf.keras answers -inf; layerserve does as
    # the file's Keras does, and the graph of a Keras 3 file fails too.
    *(
        Case(
            f"global_max_pool_{rank}d_no_steps_{flavour}",
            lambda k, L, rank=rank: k.Sequential(
                [k.Input((None,) * rank + (2,)), getattr(L, f"GlobalMaxPooling{rank}D")()]
            ),
            inputs=[no_timesteps()],
            flavours=(flavour,),
            **(
                {"input_refused": "expects at least one step", "onnx_input_refused": "needs_a_step"}
                if flavour == "keras3"
                else {}
            ),
        )
        for rank in (1, 2)
        for flavour in ("keras3", "tf_keras")
    ),
]
