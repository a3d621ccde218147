"""GaussianNoise, GaussianDropout, AlphaDropout and the dropouts (the identity at
inference, masks passed through) built by real Keras 3 (JAX) and tf_keras."""

from oracle_case import Case, masked_steps


def noise_chain(k, L):
    """Every noise layer between a Masking layer and a mask-consuming LSTM."""
    x = k.Input((6, 3))
    y = L.Masking()(x)
    y = L.GaussianNoise(0.5, seed=3)(y)
    y = L.GaussianDropout(0.3, seed=4)(y)
    y = L.AlphaDropout(0.2, noise_shape=(None, 1, 3), seed=5)(y)
    return k.Model(x, L.LSTM(2, return_sequences=True)(y))


def dropout_chain(k, L):
    """Dropout and SpatialDropout1D between a Masking layer and an LSTM (Keras 3 writes
    the spatial dropouts' configs without `trainable`, as it writes its operations')."""
    x = k.Input((6, 3))
    y = L.SpatialDropout1D(0.3)(L.Dropout(0.5)(L.Masking()(x)))
    return k.Model(x, L.LSTM(2, return_sequences=True)(y))


CASES = [
    Case("dropouts_pass_masks", dropout_chain, inputs=[masked_steps()]),
    Case("noise_layers_pass_masks", noise_chain, inputs=[masked_steps()]),
    Case(
        "noise_layers_edge_rates",
        lambda k, L: k.Sequential(
            [k.Input((4,)), L.GaussianNoise(0.0), L.GaussianDropout(1.0), L.AlphaDropout(1.0)]
            + [L.Dense(3)]
        ),
    ),
    # Keras 3 refuses stddev > 1 when loading; tf.keras files with it must load.
    Case(
        "gaussian_noise_stddev_above_one",
        lambda k, L: k.Sequential([k.Input((2, 3)), L.GaussianNoise(2.5), L.Dense(2)]),
        flavours=("tf_keras",),
    ),
]
