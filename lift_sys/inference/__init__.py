"""Inference: model registry, engines, grammar backends and the one service."""
