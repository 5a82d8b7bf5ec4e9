"""The cost objective: parameters trained and kept for deployment, as a fraction.

For a configuration, the deployable PEFT parameters are, per active layer
(h = hidden size):

* serial adapter of size D:   down ``h*D + D`` plus up ``D*h + h``;
* parallel adapter of size D: the same shapes, ``2*h*D + D + h``;
* prefix of length L:         ``2*L*h`` (a key and a value vector per position);
* LoRA of rank r:             ``4*r*h`` (on the attention query and value, each
  ``A: r x h`` and ``B: h x r``, no bias).

Prefix tuning trains a reparametrisation MLP that is thrown away after
training (``eject_prefix_tuning``); it is not counted. The task head (BERT's
pooler and output layer; RoBERTa's dense and output layers) trains in every
configuration, full fine-tuning and head-only included, so it is left out of
the fraction and reported on its own (``BuiltModel.head_params``). The
denominator is the base model's parameter count (BERT's pooler included)
without the classifier. The builder's tests check these formulas against the
parameter counts of the real model built by ``adapters``.

The fraction is known before training, so searchers use it as a known
objective instead of learning it from data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autopeft_ray.exceptions import invalid_value
from autopeft_ray.space import PeftConfiguration


def bottleneck_params(hidden_size: int, size: int) -> int:
    """Parameters of one bottleneck adapter (down and up projections with biases)."""
    return 0 if size == 0 else 2 * hidden_size * size + size + hidden_size


def prefix_params(hidden_size: int, length: int) -> int:
    """Deployable parameters of one layer's prefix (keys and values)."""
    return 2 * length * hidden_size


def lora_params(hidden_size: int, rank: int) -> int:
    """Parameters of one layer's LoRA on the query and value projections (``A`` and ``B`` each)."""
    return 2 * 2 * rank * hidden_size


def analytic_param_count(config: PeftConfiguration, hidden_size: int) -> int:
    """Deployable PEFT parameters of ``config`` on a model of width ``hidden_size``."""
    per_layer = (
        bottleneck_params(hidden_size, config.sa_size)
        + bottleneck_params(hidden_size, config.pa_size)
        + prefix_params(hidden_size, config.pt_length)
        + lora_params(hidden_size, config.lora_rank)
    )
    return per_layer * len(config.active_layers)


@dataclass(frozen=True)
class ParamCost:
    """``config -> fraction`` of the base model's parameters, known before training.

    Args:
        hidden_size: the model's hidden size.
        base_params: parameters of the base model without its task head.
    """

    hidden_size: int
    base_params: int

    def __post_init__(self) -> None:
        if self.base_params <= 0:
            raise invalid_value("base_params", self.base_params, expected="a positive count")

    def __call__(self, config: PeftConfiguration) -> float:
        return analytic_param_count(config, self.hidden_size) / self.base_params

    @classmethod
    def from_model(cls, model: str) -> ParamCost:
        """Count the base model's parameters from its config, without loading weights."""
        import torch
        from transformers import AutoModelForSequenceClassification

        from autopeft_ray.models import load_config

        config: Any = load_config(model)
        # The classifier's base model, not AutoModel: RoBERTa's classifier has no pooler.
        with torch.device("meta"):
            base = AutoModelForSequenceClassification.from_config(config).base_model
        return cls(int(config.hidden_size), sum(p.numel() for p in base.parameters()))
