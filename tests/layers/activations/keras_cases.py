"""The activation layers and every activation name, built by real Keras 3 (JAX) and
tf_keras.

Each case feeds one input to several layers and returns every result (one output per
argument combination), so that no layer hides another's numbers. Inputs mix normal
values with the points where the functions turn (0, +-0.5, +-1, +-3) and large ones.
The name cases first check that the installed Keras resolves exactly the names listed
here, so a Keras release that adds or drops one fails the test.
"""

from oracle_case import Case, ints, masked_steps

# Every name Keras 3.15.1 resolves (keras.activations.get); "threshold" resolves but
# cannot be called with the input alone, so no model can use it by name.
KERAS3_NAMES = (
    "celu", "elu", "exponential", "gelu", "glu", "hard_shrink", "hard_sigmoid",
    "hard_silu", "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid",
    "log_softmax", "mish", "relu", "relu6", "selu", "sigmoid", "silu", "soft_shrink",
    "softmax", "softplus", "softsign", "sparse_plus", "sparse_sigmoid", "sparsemax",
    "squareplus", "swish", "tanh", "tanh_shrink",
)  # fmt: skip
KERAS3_UNCALLABLE = ("threshold",)
# Every name tf_keras 2.21 resolves: its functions and the tf.nn aliases.
TF_KERAS_NAMES = (
    "elu", "exponential", "gelu", "hard_sigmoid", "leaky_relu", "linear", "log_softmax",
    "mish", "relu", "relu6", "selu", "sigmoid", "silu", "softmax", "softplus", "softsign",
    "swish", "tanh",
)  # fmt: skip
# Points where some function turns, and large magnitudes.
SPECIAL = (-40.0, -20.0, -6.0, -3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 6.0, 20.0, 40.0)


def spread(scale=2.0, special=SPECIAL):
    """Normal values with every ``special`` point at random positions of each row."""

    def make(rng, shape, dtype):
        array = rng.normal(0.0, scale, shape)
        flat = array.reshape(shape[0], -1)
        for row in flat:
            picked = rng.choice(row.size, size=min(len(special), row.size), replace=False)
            row[picked] = rng.choice(special, size=picked.size, replace=False)
        return flat.reshape(shape).astype(dtype)

    return make


def bool_mask(fully_masked_rows=2):
    """A random boolean mask whose first ``fully_masked_rows`` rows of every sample are
    all False (the case where Keras versions disagree)."""

    def make(rng, shape, dtype):
        mask = rng.random(shape) < 0.7
        mask[:, :fully_masked_rows] = False
        return mask.astype(dtype)

    return make


def branches(k, shape, *layers, dtype="float32"):
    """A model applying each layer to the same input, one output per layer."""
    x = k.Input(shape, dtype=dtype)
    return k.Model(x, [layer(x) for layer in layers])


def resolvable(k, names):
    found = []
    for name in names:
        try:
            k.activations.get(name)
        except Exception:  # noqa: BLE001 - unknown names raise ValueError or others
            continue
        found.append(name)
    return tuple(found)


def by_name(k, L, wrap):
    """``wrap(name)`` for every name the flavour has, after checking that the list is
    exactly what the installed Keras resolves."""
    keras3 = k.__name__ == "keras"
    names = KERAS3_NAMES if keras3 else TF_KERAS_NAMES
    known = set(names) | set(KERAS3_UNCALLABLE if keras3 else ())
    candidates = sorted(set(KERAS3_NAMES) | set(TF_KERAS_NAMES) | set(KERAS3_UNCALLABLE))
    candidates += ["softmax_v2", "LeakyReLU", "ThresholdedReLU", "nope"]
    got = set(resolvable(k, candidates))
    extra = got - known - {"LeakyReLU", "ThresholdedReLU"}  # tf.keras resolves its layers
    if extra or known - got:
        raise AssertionError(f"{k.__name__} resolves {sorted(got)}, expected {sorted(known)}")
    return [wrap(name) for name in names]


def dense_by_name(k, L):
    x = k.Input((5,))
    # glu halves the last axis while Dense reports the full size (in Keras too): its
    # export is refused, so it has its own case
    outputs = by_name(k, L, lambda name: None if name == "glu" else L.Dense(6, activation=name)(x))
    return k.Model(x, [y for y in outputs if y is not None])


def activation_by_name(k, L):
    x = k.Input((3, 6))
    return k.Model(x, by_name(k, L, lambda name: L.Activation(name)(x)))


def softmax_masked(k, L, **kwargs):
    x, mask = k.Input((3, 4)), k.Input((3, 4), dtype="bool")
    return k.Model([x, mask], L.Softmax(**kwargs)(x, mask=mask))


def layer_activations(k, L):
    x = k.Input((5,))
    layers = [
        L.Dense(4, activation=L.LeakyReLU(0.1)),
        L.Dense(4, activation=L.ReLU(max_value=1.0, negative_slope=0.2, threshold=0.1)),
        L.Dense(4, activation=L.ELU(0.5)),
        L.Dense(4, activation=L.Softmax()),
    ]
    return k.Model(x, [layer(x) for layer in layers])


def masked_chain(k, L):
    return k.Sequential(
        [
            k.Input((6, 4)),
            L.Masking(),
            L.ReLU(max_value=2.0),
            L.LeakyReLU(0.2),
            L.PReLU(shared_axes=[1]),
            L.ELU(),
            L.Activation("tanh"),
        ]
    )


CASES = [
    Case(
        "relu_arguments",
        lambda k, L: branches(
            k,
            (4, 6),
            L.ReLU(),
            L.ReLU(max_value=1.5),
            L.ReLU(max_value=6.0),
            L.ReLU(negative_slope=0.2),
            L.ReLU(threshold=0.5),
            L.ReLU(max_value=2.0, negative_slope=0.3, threshold=0.5),
            L.ReLU(max_value=6.0, negative_slope=1.5),
            L.ReLU(negative_slope=0.1, threshold=1.0),
        ),
        inputs=[spread()],
    ),
    Case(
        "leaky_relu_elu",
        lambda k, L: branches(
            k, (4, 6), L.LeakyReLU(), L.LeakyReLU(0.05), L.LeakyReLU(2.5), L.ELU(), L.ELU(0.4)
        ),
        inputs=[spread()],
    ),
    Case(
        "thresholded_relu",
        lambda k, L: branches(k, (4, 6), L.ThresholdedReLU(), L.ThresholdedReLU(0.5)),
        inputs=[spread()],
        flavours=("tf_keras",),  # Keras 3 has no ThresholdedReLU
    ),
    Case(
        "prelu_shared_axes",
        lambda k, L: branches(
            k,
            (3, 4, 5),
            L.PReLU(),
            L.PReLU(shared_axes=[1, 2]),
            L.PReLU(shared_axes=3),
            L.PReLU(shared_axes=[-1]),  # Keras indexes alpha's shape with axis - 1
            L.PReLU(alpha_initializer="ones", alpha_regularizer="l2", alpha_constraint="non_neg"),
        ),
        inputs=[spread()],
    ),
    Case(
        "softmax_axes",
        lambda k, L: branches(
            k, (3, 4, 5), L.Softmax(), L.Softmax(axis=1), L.Softmax(axis=[1, 2]), L.Softmax([-1])
        ),
        inputs=[spread(scale=3.0)],
    ),
    Case(
        "softmax_mask",
        softmax_masked,
        inputs=[spread(scale=3.0), bool_mask()],
    ),
    Case(
        "softmax_mask_large_logits",
        softmax_masked,
        inputs=[spread(scale=100.0), bool_mask()],  # -1e9 + x is not -1e9 here
    ),
    Case(
        "softmax_robust_masking",
        lambda k, L: softmax_masked(k, L, robust_masking=True),
        inputs=[spread(scale=100.0), bool_mask()],
        flavours=("tf_keras",),
    ),
    Case("dense_activation_names", dense_by_name, inputs=[spread()]),
    Case(
        "dense_glu",
        lambda k, L: k.Sequential([k.Input((5,)), L.Dense(6, activation="glu")]),
        flavours=("keras3",),
        export_refused="glu halves the last axis",
    ),
    Case("activation_layer_names", activation_by_name, inputs=[spread(scale=3.0)]),
    Case("activation_layers_as_activations", layer_activations, inputs=[spread()]),
    Case("masks_pass_through", masked_chain, inputs=[masked_steps(spread())]),
    # integer tensors: LeakyReLU gives floats in both flavours, ReLU(max_value=2.5) keeps
    # int32 (the cap becomes 2): refused rather than computed by one backend's rules
    Case(
        "leaky_relu_of_integers_refused",
        lambda k, L: k.Sequential([k.Input((4,), dtype="int32"), L.LeakyReLU(0.5)]),
        refused="expected a float input",
    ),
    Case(
        "relu_max_value_of_integers_refused",
        lambda k, L: k.Sequential([k.Input((4,), dtype="int32"), L.ReLU(max_value=2.5)]),
        refused="expected a float input",
    ),
    Case(
        "linear_activation_of_integers",
        lambda k, L: k.Sequential([k.Input((4,), dtype="int32"), L.Activation("linear")]),
        inputs=[ints(-5, 5)],
    ),
]
