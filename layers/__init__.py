"""NumPy reference implementations of Keras layers, grouped by family as Keras groups them.

Each family package lists its layer classes in ``LAYERS``; the loaders find a layer class
by name in :data:`LAYER_CLASSES`. Keras 3 operations recorded in functional configs (the
ops that compute masks) live apart in :data:`OP_CLASSES`, since their class names (``Any``,
``Add``) would clash with layer names.
"""

from layerserve.layers import (
    activations,
    attention,
    convolutional,
    core,
    merging,
    normalization,
    ops,
    pooling,
    preprocessing,
    regularization,
    reshaping,
    rnn,
)
from layerserve.layers.activations import *  # noqa: F403
from layerserve.layers.attention import *  # noqa: F403
from layerserve.layers.base import Layer, Variable
from layerserve.layers.convolutional import *  # noqa: F403
from layerserve.layers.core import *  # noqa: F403
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.merging import *  # noqa: F403
from layerserve.layers.normalization import *  # noqa: F403
from layerserve.layers.pooling import *  # noqa: F403
from layerserve.layers.preprocessing import *  # noqa: F403
from layerserve.layers.regularization import *  # noqa: F403
from layerserve.layers.reshaping import *  # noqa: F403
from layerserve.layers.rnn import *  # noqa: F403
from layerserve.layers.tensor import KerasTensor

FAMILIES = (
    core,
    activations,
    convolutional,
    pooling,
    normalization,
    merging,
    reshaping,
    regularization,
    preprocessing,
    rnn,
    attention,
)
LAYER_CLASSES: dict[str, type[Layer]] = {
    cls.__name__: cls for family in FAMILIES for cls in family.LAYERS
}
OP_CLASSES: dict[str, type[Layer]] = {cls.__name__: cls for cls in ops.LAYERS}
# Names other Keras versions write for the same layers (a family's optional ``ALIASES``).
LAYER_ALIASES: dict[str, str] = {
    alias: name for family in FAMILIES for alias, name in getattr(family, "ALIASES", {}).items()
}

__all__ = [
    "FAMILIES",
    "LAYER_ALIASES",
    "LAYER_CLASSES",
    "OP_CLASSES",
    "InputSpec",
    "KerasTensor",
    "Layer",
    "Variable",
]
__all__ += activations.__all__
__all__ += attention.__all__
__all__ += convolutional.__all__
__all__ += core.__all__
__all__ += merging.__all__
__all__ += normalization.__all__
__all__ += pooling.__all__
__all__ += preprocessing.__all__
__all__ += regularization.__all__
__all__ += reshaping.__all__
__all__ += rnn.__all__
