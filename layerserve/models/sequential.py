"""Sequential: a linear stack of layers."""

from __future__ import annotations

from typing import Any

from layerserve.errors import ConfigError, ModelFormatError, received
from layerserve.layers.base import Layer
from layerserve.layers.core.input_layer import InputLayer
from layerserve.layers.tensor import NOT_GIVEN, KerasTensor, is_symbolic
from layerserve.models.functional import Model


class Sequential(Model):
    """Layers applied one after the other; the first layer may carry the input shape
    (``input_shape``, ``input_dim`` or ``batch_input_shape``), or the model is built from
    the first data it sees or from ``build(input_shape)``."""

    def __init__(
        self, layers: list[Layer] | None = None, name: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(name=name, **kwargs)
        self._stack: list[Layer] = []
        self._input_layer: InputLayer | None = None
        self._explicit_input = False
        self._build_input_shape: tuple | None = None
        for layer in layers or []:
            self.add(layer)

    @classmethod
    def _default_prefix(cls) -> str:
        return "sequential"

    @property
    def layers(self) -> list[Layer]:
        return list(self._stack)

    def add(self, layer: Layer | KerasTensor) -> None:
        if isinstance(layer, KerasTensor):
            if layer.history is None or not isinstance(layer.history[0], InputLayer):
                raise ConfigError(
                    "Sequential.add() takes a layer or an `Input()` tensor. "
                    + received("layer", layer)
                )
            layer = layer.history[0]
        if not isinstance(layer, Layer):
            raise ConfigError(
                "The added layer must be an instance of class Layer. " + received("layer", layer)
            )
        if isinstance(layer, InputLayer):
            if self._stack or self._input_layer is not None:
                raise ConfigError("An InputLayer can only be the first layer of a Sequential.")
            self._input_layer = layer
            self._explicit_input = True
            self._rebuild()
            return
        if any(existing.name == layer.name for existing in self._stack):
            raise ConfigError(
                f"All layers added to a Sequential model should have unique "
                f'names. Name "{layer.name}" is already the name of a layer in '
                "this model. Give the layer its own `name`."
            )
        self._stack.append(layer)
        try:
            if self.outputs:
                self._append_to_graph(layer)
            else:
                self._rebuild()
        except Exception:
            self._stack.pop()  # a layer that cannot be wired in is not added
            self._rebuild()
            raise

    def pop(self) -> None:
        if not self._stack:
            raise ConfigError("There are no layers in the model.")
        self._stack.pop()
        if not self._explicit_input and not self._stack:
            self._input_layer = None
        self._rebuild()

    def build(self, input_shape: Any = None) -> None:
        if input_shape is None:
            raise ConfigError(
                "Sequential.build() needs an `input_shape` including the batch "
                "axis, e.g. (None, 16)."
            )
        self._build_input_shape = tuple(input_shape)
        self._rebuild()

    def _input_spec_from_layers(self) -> InputLayer | None:
        if self._input_layer is not None:
            return self._input_layer
        if not self._stack:
            return None
        first = self._stack[0]
        shape = getattr(first, "batch_input_shape", None) or self._build_input_shape
        if shape is None:
            return None
        self._input_layer = InputLayer(
            batch_input_shape=shape, dtype=first.dtype, name=f"{first.name}_input"
        )
        return self._input_layer

    def _rebuild(self) -> None:
        self.inputs, self.outputs, self._nodes, self._layers = [], [], [], []
        input_layer = self._input_spec_from_layers()
        if input_layer is None or not self._stack:
            self.built = False
            return
        x = input_layer.output
        for layer in self._stack:
            x = self._apply(layer, x)
        self._init_graph(input_layer.output, x)

    def _append_to_graph(self, layer: Layer) -> None:
        x = self._apply(layer, self.outputs[0])
        self._init_graph(self.inputs[0], x)

    @staticmethod
    def _apply(layer: Layer, x: KerasTensor) -> KerasTensor:
        out = layer(x)
        if isinstance(out, list):
            raise ConfigError(
                f"All layers in a Sequential model should have a single output "
                f"tensor. Layer {layer.name} returns {len(out)}; use the "
                "functional API for multi-output layers."
            )
        return out

    def run(
        self,
        inputs: Any,
        training: bool = False,
        mask: Any = None,
        previous_mask: Any = NOT_GIVEN,
    ) -> tuple[Any, Any]:
        if not self.outputs and not is_symbolic(inputs):
            self._build_from_data(inputs)
        return super().run(inputs, training=training, mask=mask)

    def predict(self, x: Any, batch_size: int | None = 32, verbose: int = 0) -> Any:
        if not self.outputs:
            self._build_from_data(x)
        return super().predict(x, batch_size=batch_size, verbose=verbose)

    def _build_from_data(self, inputs: Any) -> None:
        import numpy as np

        array = np.asarray(inputs[0] if isinstance(inputs, (list, tuple)) else inputs)
        self.build((None, *array.shape[1:]))

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": self.name, "layers": []}
        for index, layer in enumerate(self._stack):
            layer_config = layer.get_config()
            if (
                index == 0
                and self._input_layer is not None
                and ("batch_input_shape" not in layer_config)
            ):
                config["build_input_shape"] = list(self._input_layer.batch_input_shape)
            config["layers"].append({"class_name": type(layer).__name__, "config": layer_config})
        return config

    @classmethod
    def from_config(cls, config: Any) -> Sequential:
        from layerserve.models.rebuild import deserialize_layer

        if isinstance(config, list):  # Keras 2.2.0-2.2.2 wrote a bare list of layers
            config = {"layers": config}
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ModelFormatError(
                f"A Sequential config needs a 'layers' list. Received: {type(config).__name__}"
            )
        model = cls(name=config.get("name"))
        for entry in config["layers"]:
            model.add(deserialize_layer(entry))
        shape = config.get("build_input_shape")
        if shape is not None and not model.outputs:
            model.build(tuple(shape))
        return model
