"""Normalization layers built by real Keras 3 (JAX) and tf_keras: every argument that
changes the numbers, both data layouts, masks, and the layers' version differences."""

from oracle_case import Case, floats, masked_steps

# A mean large against the spread: the one-pass variance E[x^2] - E[x]^2 is off by far
# more than the tolerance here, while every two-pass evaluation order agrees with Keras.
LARGE_MEAN = floats(scale=1.0, offset=30.0)


def seq(k, shape, *layers):
    return k.Sequential([k.Input(shape), *layers])


def frozen(layer):
    layer.trainable = False
    return layer


BATCH_NORMALIZATION = [
    Case("bn_after_dense", lambda k, L: seq(k, (6,), L.Dense(5), L.BatchNormalization())),
    Case(
        "bn_channels_first_no_center",
        lambda k, L: seq(
            k, (3, 5, 4), L.BatchNormalization(axis=1, center=False, epsilon=1e-2, momentum=0.9)
        ),
    ),
    Case(
        "bn_channels_last_no_scale_frozen",
        lambda k, L: seq(
            k,
            (4, 5, 3),
            frozen(
                L.BatchNormalization(
                    scale=False,
                    epsilon=1e-4,
                    beta_initializer="ones",
                    moving_variance_initializer="random_uniform",
                    beta_regularizer="l2",
                    beta_constraint="non_neg",
                )
            ),
        ),
    ),
    Case(
        "bn_renorm",
        lambda k, L: seq(
            k,
            (4, 3),
            L.BatchNormalization(
                renorm=True,
                renorm_clipping={"rmax": 3.0, "rmin": 0.5, "dmax": 2.0},
                renorm_momentum=0.9,
            ),
        ),
    ),
    Case(
        "bn_multi_axis",
        lambda k, L: seq(k, (4, 5, 3), L.BatchNormalization(axis=[1, 3])),
        flavours=("tf_keras",),
        note="Keras 3 takes an int axis only",
    ),
    Case(
        "bn_virtual_batch",
        lambda k, L: seq(k, (4, 3), L.BatchNormalization(virtual_batch_size=7, axis=[1])),
        flavours=("tf_keras",),
        note="weights (1, 1, 4, 1), saved axis [2]; tf_keras cannot reload these files",
    ),
    Case(
        "bn_masked",
        lambda k, L: seq(k, (6, 3), L.Masking(), L.BatchNormalization()),
        inputs=[masked_steps()],
    ),
]

LAYER_NORMALIZATION = [
    Case("ln_large_mean", lambda k, L: seq(k, (8,), L.LayerNormalization()), inputs=[LARGE_MEAN]),
    Case(
        "ln_trailing_axes_small_epsilon",
        lambda k, L: seq(k, (4, 5, 3), L.LayerNormalization(axis=[-2, -1], epsilon=1e-5)),
        inputs=[LARGE_MEAN],
    ),
    Case(
        "ln_unsorted_non_trailing_no_center",
        lambda k, L: seq(k, (4, 5, 3), L.LayerNormalization(axis=[3, 1], center=False)),
        note="Keras 3 sorts the axes; tf.keras keeps [3, 1] and reshapes gamma (3, 4)",
    ),
    Case(
        "ln_channels_first_no_scale",
        lambda k, L: seq(k, (3, 4, 5), L.LayerNormalization(axis=1, scale=False)),
    ),
    # no gamma or beta: the normalized axes may have unknown sizes
    Case(
        "ln_unknown_steps_without_weights",
        lambda k, L: seq(
            k, (None, 3), L.LayerNormalization(axis=[1, 2], center=False, scale=False)
        ),
    ),
    Case(
        "ln_masked",
        lambda k, L: seq(k, (6, 3), L.Masking(), L.LayerNormalization(epsilon=0.1)),
        inputs=[masked_steps()],
    ),
    Case(
        "ln_rms_scaling",
        lambda k, L: seq(k, (6,), L.LayerNormalization(rms_scaling=True)),
        inputs=[floats(offset=2.0)],
        flavours=("keras3",),
    ),
    Case(
        "ln_rms_scaling_no_scale",
        lambda k, L: seq(
            k, (3, 4), L.LayerNormalization(axis=[1, 2], rms_scaling=True, scale=False)
        ),
        inputs=[floats(offset=1.0)],
        flavours=("keras3",),
    ),
]

GROUP_NORMALIZATION = [
    Case(
        "gn_channels_last",
        lambda k, L: seq(k, (4, 4, 6), L.GroupNormalization(groups=3)),
        inputs=[LARGE_MEAN],
    ),
    Case(
        "gn_channels_first_no_center",
        lambda k, L: seq(
            k, (6, 4, 5), L.GroupNormalization(groups=2, axis=1, center=False, epsilon=1e-4)
        ),
    ),
    Case(
        "gn_instance_no_scale",
        lambda k, L: seq(k, (5, 4), L.GroupNormalization(groups=-1, scale=False)),
    ),
    Case(
        "gn_masked",
        lambda k, L: seq(k, (7, 7), L.Masking(), L.GroupNormalization(groups=7)),
        inputs=[masked_steps()],
        note="tf.keras weights the moments by the (N, T) mask broadcast to (N, T, C) "
        "(it only broadcasts because N = T = C here); Keras 3 ignores it",
    ),
]

UNIT_NORMALIZATION = [
    Case(
        "un_tiny_vectors",
        lambda k, L: seq(k, (5,), L.UnitNormalization()),
        inputs=[floats(scale=1e-7)],
        note="norms below 1e-6: Keras 3 gives unit vectors, tf.keras x / 1e-6",
    ),
    Case("un_multi_axis", lambda k, L: seq(k, (3, 4, 2), L.UnitNormalization(axis=[1, 2]))),
    Case(
        "un_masked_zero_steps",
        lambda k, L: seq(k, (6, 3), L.Masking(), L.UnitNormalization()),
        inputs=[masked_steps()],
    ),
]

RMS_NORMALIZATION = [
    Case(
        "rms_default",
        lambda k, L: seq(k, (6,), L.RMSNormalization()),
        inputs=[floats(offset=1.0)],
        flavours=("keras3",),
    ),
    Case(
        "rms_trailing_axes",
        lambda k, L: seq(k, (3, 4, 5), L.RMSNormalization(axis=[-1, -2], epsilon=1e-3)),
        flavours=("keras3",),
    ),
    Case(
        "rms_axis_one_scales_last_axis",
        lambda k, L: seq(k, (4, 4), L.RMSNormalization(axis=1)),
        flavours=("keras3",),
        note="Keras multiplies the (4,) scale with plain broadcasting: on the last axis",
    ),
    Case(
        "rms_drops_mask",
        lambda k, L: seq(k, (6, 3), L.Masking(), L.RMSNormalization()),
        inputs=[masked_steps()],
        flavours=("keras3",),
    ),
]

CASES = (
    BATCH_NORMALIZATION
    + LAYER_NORMALIZATION
    + GROUP_NORMALIZATION
    + UNIT_NORMALIZATION
    + RMS_NORMALIZATION
)
