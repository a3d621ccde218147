"""Pooling layers: MaxPooling, AveragePooling and the global poolings."""
