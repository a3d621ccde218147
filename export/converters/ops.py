"""Keras 3 operations recorded in functional configs."""
