"""Helpers for tests and benchmarks: a synthetic search problem with a known answer."""

from .synthetic import SyntheticPeftProblem, bert_like_base_params

__all__ = ["SyntheticPeftProblem", "bert_like_base_params"]
