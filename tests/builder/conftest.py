"""Fixtures shared by the builder tests: the offline model's tokenizer and a tiny batch."""

from __future__ import annotations

from typing import Any

import pytest

SENTENCES = ["a gripping, beautifully acted film", "dull and far too long"]


@pytest.fixture(scope="session")
def batch() -> dict[str, Any]:
    """Two sentences tokenised with the default model's own tokenizer, labels 1 and 0."""
    import torch
    from transformers import AutoTokenizer

    from autopeft_ray.models import DEFAULT_MODEL, resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))
    encoded = dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    encoded["labels"] = torch.tensor([1, 0])
    return encoded
