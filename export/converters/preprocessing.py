"""Preprocessing layers: Rescaling (Mul, Add), Normalization (Sub, Div), CenterCrop and
Resizing (Slice, Pad, Resize or Gather) and the random augmentation layers (a Cast at
most: they are the identity at inference).

Image layers work in place on either layout: ``Slice``/``Pad``/``Gather`` take the axes
directly and ``Resize`` resizes NHWC when the sizes of N and C are unchanged. Bilinear
resizing is ``Resize(mode=linear, coordinate_transformation_mode=half_pixel)``, exact for
TensorFlow's (and JAX's) half-pixel bilinear without antialiasing at any scale.
Nearest-neighbour resizing is a ``Gather`` per axis of precomputed source indices: ONNX's
``round_prefer_ceil`` rule computes the half-pixel source in another float order and
differs from TensorFlow's float32 rule at some sizes (14 -> 23).
"""

from __future__ import annotations

import numpy as np

from layerserve.errors import NotSupportedError
from layerserve.export.builder import GraphBuilder, Value, onnx_type
from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers.preprocessing import image_utils
from layerserve.layers.preprocessing.base_augmentation import AugmentationLayer
from layerserve.layers.preprocessing.center_crop import CenterCrop, center_crop_plan
from layerserve.layers.preprocessing.normalization import Normalization
from layerserve.layers.preprocessing.random_crop import RandomCrop
from layerserve.layers.preprocessing.rescaling import Rescaling
from layerserve.layers.preprocessing.resizing import Resizing


@converter(Rescaling)
def convert_rescaling(conversion: Conversion) -> Converted:
    """``x * scale + offset`` (the input is already cast); a scale of ones and an offset
    of zeros are skipped."""
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    out = x.name
    if not np.all(layer.scale_value == 1):
        scale = builder.constant(layer.scale_value, f"{layer.name}_scale")
        out = builder.op("Mul", [out, scale], f"{layer.name}_scaled")
    if not np.all(layer.offset_value == 0):
        offset = builder.constant(layer.offset_value, f"{layer.name}_offset")
        out = builder.op("Add", [out, offset], layer.name)
    return Converted([out])


@converter(Normalization)
def convert_normalization(conversion: Conversion) -> Converted:
    """``(x - mean) / deviation`` or, inverted, ``mean + x * deviation``; the deviation
    ``max(sqrt(variance), epsilon)`` is computed at export."""
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    mean, deviation = layer.constants()
    mean_name = builder.constant(mean, f"{layer.name}_mean")
    deviation_name = builder.constant(deviation, f"{layer.name}_deviation")
    if layer.invert:
        scaled = builder.op("Mul", [x.name, deviation_name], f"{layer.name}_scaled")
        return Converted([builder.op("Add", [scaled, mean_name], layer.name)])
    centred = builder.op("Sub", [x.name, mean_name], f"{layer.name}_centred")
    return Converted([builder.op("Div", [centred, deviation_name], layer.name)])


@converter(CenterCrop)
def convert_center_crop(conversion: Conversion) -> Converted:
    """A ``Slice``; an image smaller than the target is cropped to its aspect ratio and
    resized (the branch is chosen from the static input size)."""
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    height, width = _static_size(layer, x, layer.data_format, "whether it crops or resizes")
    branch, box = center_crop_plan(height, width, layer.height, layer.width)
    out = _window(builder, x.name, (height, width), box, layer.data_format, layer.name)
    if branch == "resize":
        out = _bilinear(builder, out, (box[2], box[3]), layer)
    return Converted([out])


@converter(Resizing)
def convert_resizing(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    x = _cast_to_output(conversion)
    h_axis, w_axis = image_utils.spatial_axes(layer.data_format)
    size = (x.shape[h_axis], x.shape[w_axis])
    needs_size = (
        layer.crop_to_aspect_ratio
        or layer.pad_to_aspect_ratio
        or layer.interpolation == "nearest"
        or layer.antialias
    )
    if needs_size:
        size = _static_size(layer, x, layer.data_format, "the resize")
    if None in size:  # plain bilinear: onnxruntime resizes any input size
        return Converted([_bilinear(builder, x.name, size, layer)])
    plan = layer.plan(*size)
    out = x.name
    if plan.crop is not None:
        out = _window(builder, out, size, plan.crop, layer.data_format, layer.name)
        size = plan.crop[2:]
    if plan.pad is not None:
        out = _pad(builder, out, x, plan.pad, layer)
        size = (size[0] + 2 * plan.pad[0], size[1] + 2 * plan.pad[1])
    if plan.nearest:
        for axis, indices, length in (
            (h_axis, plan.rows, size[0]),
            (w_axis, plan.columns, size[1]),
        ):
            if not np.array_equal(indices, np.arange(length)):  # not an unchanged axis
                source = builder.int64s(indices, f"{layer.name}_source_{axis}")
                out = builder.op("Gather", [out, source], f"{layer.name}_nearest", axis=axis)
        return Converted([out])
    return Converted([_bilinear(builder, out, size, layer)])


@converter(AugmentationLayer)
def convert_augmentation(conversion: Conversion) -> Converted:
    """The identity at inference, with Keras's cast; tf.keras's RandomCrop resizes."""
    layer, builder = conversion.layer, conversion.builder
    x = _cast_to_output(conversion)
    if not (isinstance(layer, RandomCrop) and layer.resizes):
        return Converted([x.name])
    height, width = _static_size(layer, x, layer.data_format, "the inference resize")
    box = image_utils.aspect_crop_box(height, width, layer.height, layer.width)
    out = _window(builder, x.name, (height, width), box, layer.data_format, layer.name)
    return Converted([_bilinear(builder, out, (box[2], box[3]), layer)])


# ---- shared emitters ---------------------------------------------------------------------
def _cast_to_output(conversion: Conversion) -> Value:
    x, dtype = conversion.inputs[0], conversion.output_dtypes[0]
    if x.dtype == dtype:
        return x
    name = conversion.builder.op(
        "Cast", [x.name], f"{conversion.layer.name}_cast", to=onnx_type(dtype)
    )
    return Value(name, x.shape, dtype)


def _static_size(layer: object, x: Value, data_format: str, what: str) -> tuple[int, int]:
    h_axis, w_axis = image_utils.spatial_axes(data_format)
    size = (x.shape[h_axis], x.shape[w_axis])
    if None in size:
        raise NotSupportedError(
            f"{type(layer).__name__} {layer.name}: the input's height and width are unknown "
            f"(shape {x.shape}), and {what} depends on them; export a model with a fixed "
            "image size."
        )
    return size


def _window(
    builder: GraphBuilder,
    name: str,
    size: tuple[int, int],
    box: tuple[int, int, int, int],
    data_format: str,
    layer_name: str,
) -> str:
    """``Slice`` of the ``(top, left, height, width)`` box (nothing for the whole image)."""
    top, left, height, width = box
    if (top, left, height, width) == (0, 0, *size):
        return name
    starts = builder.int64s([top, left], f"{layer_name}_starts")
    ends = builder.int64s([top + height, left + width], f"{layer_name}_ends")
    axes = builder.int64s(list(image_utils.spatial_axes(data_format)), f"{layer_name}_axes")
    return builder.op("Slice", [name, starts, ends, axes], f"{layer_name}_window")


def _pad(builder: GraphBuilder, name: str, x: Value, pad: tuple[int, int], layer: Resizing) -> str:
    h_axis, w_axis = image_utils.spatial_axes(layer.data_format)
    widths = [0] * 8
    widths[h_axis] = widths[4 + h_axis] = pad[0]
    widths[w_axis] = widths[4 + w_axis] = pad[1]
    pads = builder.int64s(widths, f"{layer.name}_pads")
    value = builder.constant(image_utils.pad_value(layer.fill_value, x.dtype), f"{layer.name}_fill")
    return builder.op("Pad", [name, pads, value], f"{layer.name}_padded", mode="constant")


def _bilinear(builder: GraphBuilder, name: str, size: tuple, layer: object) -> str:
    """Half-pixel bilinear resize of ``name`` (spatial ``size``, None if unknown) to the
    layer's ``height x width``. Below opset 18 ``Resize`` takes the sizes of every axis,
    so the batch (and an unknown channel count) come from ``Shape``."""
    target = (layer.height, layer.width)
    if tuple(size) == target:
        return name
    h_axis, w_axis = image_utils.spatial_axes(layer.data_format)
    attributes = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    if builder.opset >= 18:
        sizes = builder.int64s(list(target), f"{layer.name}_sizes")
        attributes["axes"] = [h_axis, w_axis]
    else:
        keep = np.ones(4, dtype=np.int64)
        keep[[h_axis, w_axis]] = 0
        offsets = np.zeros(4, dtype=np.int64)
        offsets[[h_axis, w_axis]] = target
        shape = builder.op("Shape", [name], f"{layer.name}_shape")
        kept = builder.op(
            "Mul", [shape, builder.int64s(keep, f"{layer.name}_keep")], f"{layer.name}_kept"
        )
        sizes = builder.op(
            "Add", [kept, builder.int64s(offsets, f"{layer.name}_target")], f"{layer.name}_sizes"
        )
    return builder.op("Resize", [name, "", "", sizes], f"{layer.name}_resized", **attributes)
