"""Loading and saving models."""
