"""Adapters for models synthloop did not build: :mod:`synthloop.models.hf` wraps any transformers causal LM."""
