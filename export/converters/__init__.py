"""One converter module per layer family; importing this package registers them all."""

from layerserve.export.converters import (  # noqa: F401
    activations,
    attention,
    convolutional,
    dense,
    einsum_dense,
    embedding,
    lambda_layer,
    masking,
    merging,
    model,
    normalization,
    ops,
    pooling,
    preprocessing,
    regularization,
    reshaping,
    rnn,
    wrappers,
)
