"""Preprocessing layers that live inside saved models."""
