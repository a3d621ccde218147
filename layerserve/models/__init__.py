"""Models: ``Sequential``, the functional ``Model`` and loading/saving entry points."""

from layerserve.layers.core.input_layer import Input
from layerserve.models.functional import Model
from layerserve.models.sequential import Sequential


def load_model(filepath, custom_objects=None, safe_mode=True, weights=None):  # noqa: ANN001, ANN201
    """Load a ``.keras`` archive, a Keras ``.h5`` file, a layerserve model, or a model
    JSON file with ``weights`` from a Keras weights file."""
    from layerserve.saving import load_model as _load

    return _load(filepath, custom_objects=custom_objects, safe_mode=safe_mode, weights=weights)


def model_from_json(json_string, custom_objects=None, safe_mode=True):  # noqa: ANN001, ANN201
    """Build a model from Keras 2.2, tf.keras 2.x or Keras 3 ``to_json()`` output."""
    from layerserve.saving import model_from_json as _from_json

    return _from_json(json_string, custom_objects=custom_objects, safe_mode=safe_mode)


__all__ = ["Input", "Model", "Sequential", "load_model", "model_from_json"]
