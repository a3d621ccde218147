"""Preprocessing layers that live inside saved models, built by real Keras 3 (JAX) and
tf_keras: Rescaling, Normalization, CenterCrop, Resizing and the random augmentation
layers (the identity at inference)."""

import numpy as np
from oracle_case import Case, floats, ints, masked_steps

K3 = ("keras3",)
TFK = ("tf_keras",)
# Keras 3 cannot write RandomContrast/RandomBrightness to .h5 ("cannot pickle 'module'").
NO_KERAS3_H5 = {"keras3": ("keras", "json+weights")}


def seq(k, shape, *layers, dtype="float32"):
    return k.Sequential([k.Input(shape, dtype=dtype), *layers])


def normalization_adapted(k, L):
    """Adapted statistics are weights (mean, variance, count). Keras caches them when they
    are adapted or loaded, so they are adapted here (not drawn by the writer)."""
    rng = np.random.default_rng(0)
    per_position = L.Normalization(axis=(1, 2))
    per_position.adapt(rng.normal(2.0, 3.0, (20, 4, 3)).astype("float32"))
    inverse = L.Normalization(axis=None, invert=True)
    inverse.adapt(rng.normal(-1.0, 0.5, (20, 4, 3)).astype("float32"))
    return seq(k, (4, 3), per_position, inverse)


def augmentations(k, L, keras3):
    extra = {"data_format": "channels_last"} if keras3 else {}
    layers = [
        L.RandomFlip("horizontal", seed=1, **extra),
        L.RandomRotation(0.2, fill_mode="constant", interpolation="nearest", seed=2, **extra),
        L.RandomZoom(0.1, width_factor=(-0.2, 0.1), fill_value=1.0, **extra),
        L.RandomTranslation(0.1, (-0.2, 0.2), fill_mode="wrap", **extra),
        L.RandomContrast(0.3, seed=3),
        L.RandomBrightness(0.2, value_range=(0, 1)),
    ]
    return seq(k, (5, 4, 3), *layers, dtype="uint8")


CASES = [
    # ---- Rescaling --------------------------------------------------------------------
    Case(
        "rescaling_uint8_images",
        lambda k, L: seq(k, (4, 5, 3), L.Rescaling(1 / 127.5, offset=-1), dtype="uint8"),
        inputs=[ints(0, 256)],
    ),
    Case(
        "rescaling_per_channel_arrays",
        lambda k, L: seq(
            k,
            (4, 5, 3),
            L.Rescaling(
                np.array([0.5, 2.0, -3.0], "float32"), offset=np.array([1, 0, 2.5], "float32")
            ),
        ),
    ),
    Case(
        "rescaling_mask",  # Keras 3 passes the mask; tf.keras drops it
        lambda k, L: seq(k, (5, 2), L.Masking(), L.Rescaling(2.0, offset=[0.5, -1.0])),
        inputs=[masked_steps()],
    ),
    # ---- Normalization ----------------------------------------------------------------
    Case(
        "normalization_config_statistics",
        lambda k, L: seq(
            k, (4, 3), L.Normalization(mean=[1.0, -2.0, 0.5], variance=[4.0, 1e-16, 0.25])
        ),
        inputs=[floats(3.0)],
    ),
    Case("normalization_adapted_axes_invert", normalization_adapted, weights="keep"),
    Case(
        "normalization_int_input_scalar_axis",
        lambda k, L: seq(
            k,
            (3, 2),
            L.Normalization(axis=1, mean=[3.0, 1.0, 2.0], variance=[2.0, 2.0, 0.5]),
            dtype="int32",
        ),
        inputs=[ints(-5, 5)],
    ),
    Case(
        "normalization_mask",
        lambda k, L: seq(
            k, (5, 2), L.Masking(), L.Normalization(mean=1.0, variance=4.0, axis=None)
        ),
        inputs=[masked_steps()],
    ),
    # ---- CenterCrop ---------------------------------------------------------------------
    Case("center_crop_crops", lambda k, L: seq(k, (7, 6, 2), L.CenterCrop(4, 3))),
    Case("center_crop_upsizes", lambda k, L: seq(k, (5, 6, 2), L.CenterCrop(7, 4))),
    Case(
        "center_crop_channels_first",
        lambda k, L: seq(k, (2, 5, 6), L.CenterCrop(3, 7, data_format="channels_first")),
        flavours=K3,
    ),
    Case(
        "center_crop_uint8",
        lambda k, L: seq(k, (6, 6, 1), L.CenterCrop(4, 5), dtype="uint8"),
        inputs=[ints(0, 256)],
    ),
    # ---- Resizing -------------------------------------------------------------------------
    Case("resizing_bilinear", lambda k, L: seq(k, (5, 6, 2), L.Resizing(7, 4))),
    Case(
        "resizing_bilinear_crop_to_aspect_ratio",
        lambda k, L: seq(k, (7, 5, 2), L.Resizing(4, 6, crop_to_aspect_ratio=True)),
    ),
    Case(
        "resizing_nearest",
        lambda k, L: seq(k, (5, 7, 2), L.Resizing(8, 3, interpolation="nearest")),
    ),
    Case(  # TensorFlow's float32 scale: output row 11 reads row 6 (the exact rule: 7)
        "resizing_nearest_float32_scale",
        lambda k, L: seq(k, (14, 3, 1), L.Resizing(23, 2, interpolation="nearest")),
        flavours=TFK,
    ),
    Case(
        "resizing_nearest_backend_dependent",
        lambda k, L: seq(k, (14, 3, 1), L.Resizing(23, 2, interpolation="nearest")),
        flavours=K3,
        refused="different pixels on Keras 3's TensorFlow backend",
    ),
    Case(
        "resizing_pad_to_aspect_ratio",
        lambda k, L: seq(k, (7, 5, 2), L.Resizing(4, 6, pad_to_aspect_ratio=True, fill_value=0.5)),
        flavours=K3,
    ),
    Case(
        "resizing_pad_channels_first_nearest_antialias",
        lambda k, L: seq(
            k,
            (2, 6, 3),
            L.Resizing(
                5,
                9,
                interpolation="nearest",
                pad_to_aspect_ratio=True,
                antialias=True,
                data_format="channels_first",
            ),
        ),
        flavours=K3,
    ),
    Case(
        "resizing_antialias_upscale",
        lambda k, L: seq(k, (5, 6, 2), L.Resizing(9, 6, antialias=True)),
        flavours=K3,
    ),
    Case(
        "resizing_antialias_downscale",
        lambda k, L: seq(k, (5, 6, 2), L.Resizing(9, 4, antialias=True)),
        flavours=K3,
        refused="antialiased bilinear downscaling",
    ),
    Case(
        "resizing_bicubic",
        lambda k, L: seq(k, (5, 6, 2), L.Resizing(3, 4, interpolation="bicubic")),
        refused="bicubic interpolation has no exact ONNX form",
    ),
    Case(
        "resizing_uint8_nearest",  # Keras 3 keeps uint8; tf.keras returns floats
        lambda k, L: seq(k, (4, 5, 1), L.Resizing(6, 3, interpolation="nearest"), dtype="uint8"),
        inputs=[ints(0, 256)],
    ),
    Case(  # the fill value is rounded (half to even: 2.5 -> 2) into uint8
        "resizing_uint8_nearest_pad",
        lambda k, L: seq(
            k,
            (3, 8, 1),
            L.Resizing(6, 4, "nearest", pad_to_aspect_ratio=True, fill_value=2.5),
            dtype="uint8",
        ),
        inputs=[ints(0, 256)],
        flavours=K3,
    ),
    Case(
        "resizing_uint8_bilinear",
        lambda k, L: seq(k, (4, 5, 1), L.Resizing(6, 3), dtype="uint8"),
        inputs=[ints(0, 256)],
        flavours=TFK,
    ),
    Case(
        "resizing_uint8_bilinear_rounds",
        lambda k, L: seq(k, (4, 5, 1), L.Resizing(6, 3), dtype="uint8"),
        inputs=[ints(0, 256)],
        flavours=K3,
        refused="rounds bilinear results back to the integer input dtype",
    ),
    # ---- random augmentation (the identity at inference) -------------------------------
    Case(
        "augmentations_keras3",
        lambda k, L: augmentations(k, L, True),
        flavours=K3,
        inputs=[ints(0, 256)],
        formats=NO_KERAS3_H5,
    ),
    Case(
        "augmentations_tf_keras",
        lambda k, L: augmentations(k, L, False),
        flavours=TFK,
        inputs=[ints(0, 256)],
    ),
    Case(
        "augmentations_keep_integers",  # Keras 3 keeps uint8 here; tf.keras casts
        lambda k, L: seq(
            k, (3, 4, 2), L.RandomContrast(0.5), L.RandomBrightness(0.1), dtype="uint8"
        ),
        inputs=[ints(0, 256)],
        formats=NO_KERAS3_H5,
    ),
    Case("random_crop_at_inference", lambda k, L: seq(k, (6, 5, 2), L.RandomCrop(3, 4, seed=7))),
    # Preprocessing layers layerserve does not implement: the loader's unknown-layer error.
    Case(
        "unimplemented_preprocessing_layers",
        lambda k, L: seq(
            k,
            (3,),
            L.Discretization(bin_boundaries=[0.0, 1.0]),
            L.CategoryEncoding(num_tokens=3, output_mode="count"),
        ),
        refused="Discretization",
    ),
]
