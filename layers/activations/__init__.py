"""Activation layers."""

from layerserve.layers.activations.activation import Activation
from layerserve.layers.activations.elu import ELU
from layerserve.layers.activations.leaky_relu import LeakyReLU
from layerserve.layers.activations.prelu import PReLU
from layerserve.layers.activations.relu import ReLU
from layerserve.layers.activations.softmax import Softmax
from layerserve.layers.activations.thresholded_relu import ThresholdedReLU

LAYERS = (Activation, ELU, LeakyReLU, PReLU, ReLU, Softmax, ThresholdedReLU)

__all__ = ["ELU", "Activation", "LeakyReLU", "PReLU", "ReLU", "Softmax", "ThresholdedReLU"]
