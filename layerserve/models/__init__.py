"""Models: Sequential and the functional Model."""
