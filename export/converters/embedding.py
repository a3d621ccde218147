"""Embedding and Identity."""
