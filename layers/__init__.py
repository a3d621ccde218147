"""NumPy reference implementations of the Keras core layers."""
