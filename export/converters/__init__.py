"""One converter module per layer family; importing this package registers them all."""

from layerserve.export.converters import (  # noqa: F401
    activation,
    conv2d,
    dense,
    inference_identity,
    lambda_layer,
    lstm,
    masking,
    model,
    reshaping,
)
