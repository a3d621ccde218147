"""One converter module per layer family; importing this package registers them all."""

from layerserve.export.converters import (  # noqa: F401
    activations,
    convolutional,
    dense,
    lambda_layer,
    masking,
    model,
    regularization,
    reshaping,
    rnn,
)
