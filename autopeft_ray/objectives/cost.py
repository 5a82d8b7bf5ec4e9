"""The cost objective: parameters trained and kept for deployment, as a fraction.

For a configuration, the deployable PEFT parameters are, per active layer,
what ``adapters`` builds for each module (:func:`deployable_params`). On BERT
and RoBERTa (h = hidden size) that is:

* serial adapter of size D:   down ``h*D + D`` plus up ``D*h + h``;
* parallel adapter of size D: the same shapes, ``2*h*D + D + h``;
* prefix of length L:         ``2*L*h`` (a key and a value vector per position);
* LoRA of rank r:             ``4*r*h`` (on the attention query and value, each
  ``A: r x h`` and ``B: h x r``, no bias).

Decoders differ: Llama and Mistral use grouped-query attention, so a prefix
holds ``2*L*k`` (``k`` = key/value heads x head size, not ``h``) and LoRA on
the value projection ``r*(h + k)``. Rather than one formula per family,
:meth:`ParamCost.from_model` measures each module's count per layer by
building it with ``adapters`` on a meta-device copy of the model (no weights
are allocated) at two sizes: counts are linear in the size (``a*size + b``
per layer, ``b`` the bottleneck's output bias), so two points give the exact
count at every size, for any family ``adapters`` supports. On BERT the
measured counts equal the formulas above (tested).

Prefix tuning trains a reparametrisation MLP that is thrown away after
training (``eject_prefix_tuning``); it is not counted. The task head (BERT's
pooler and output layer; RoBERTa's dense and output layers; a decoder's
last-token ``score`` layer) trains in every configuration, full fine-tuning
and head-only included, so it is left out of the fraction and reported on its
own (``BuiltModel.head_params``); a causal LM trains no head. The denominator
is the base model's parameter count (BERT's pooler included) without the
classifier or language-model head; tied input and output embeddings count
once, as the embedding. The builder's tests check the counts against the
parameter counts of the real model built by ``adapters``.

The fraction is known before training, so searchers use it as a known
objective instead of learning it from data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autopeft_ray.exceptions import UnsupportedError, invalid_value
from autopeft_ray.space import MODULES, PeftConfiguration
from autopeft_ray.space.support import adapter_config, quiet_activation_warning


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


#: Sizes at which :func:`measure_module_costs` builds each module (two points fix a line).
MEASURED_SIZES = (1, 2)


@dataclass(frozen=True)
class ParamCost:
    """``config -> fraction`` of the base model's parameters, known before training.

    Args:
        hidden_size: the model's hidden size.
        base_params: parameters of the base model without its task head.
        module_costs: per module, ``(module, per_unit, fixed)``: one layer's
            deployable parameters at size ``s > 0`` are ``per_unit * s + fixed``
            (:func:`measure_module_costs`). ``None``: BERT's formulas
            (:func:`analytic_param_count`).
    """

    hidden_size: int
    base_params: int
    module_costs: tuple[tuple[str, int, int], ...] | None = None

    def __post_init__(self) -> None:
        if self.base_params <= 0:
            raise invalid_value("base_params", self.base_params, expected="a positive count")
        if self.module_costs is not None:
            costs = tuple((str(m), int(a), int(b)) for m, a, b in self.module_costs)
            if sorted(m for m, _, _ in costs) != sorted(MODULES) or any(
                a < 0 or b < 0 for _, a, b in costs
            ):
                raise invalid_value(
                    "module_costs",
                    self.module_costs,
                    expected=f"one non-negative (module, per_unit, fixed) for each of {MODULES}",
                )
            object.__setattr__(self, "module_costs", costs)

    def param_count(self, config: PeftConfiguration) -> int:
        """Deployable PEFT parameters of ``config`` on this model."""
        if self.module_costs is None:
            return analytic_param_count(config, self.hidden_size)
        per_layer = sum(
            per_unit * config.size(module) + fixed
            for module, per_unit, fixed in self.module_costs
            if config.size(module) > 0
        )
        return per_layer * len(config.active_layers)

    def __call__(self, config: PeftConfiguration) -> float:
        return self.param_count(config) / self.base_params

    @classmethod
    def from_model(cls, model: str) -> ParamCost:
        """Count the base model and measure every module on it, without loading weights."""
        from autopeft_ray.models import load_config, model_shape

        config: Any = load_config(model)
        base_params, module_costs = measure_module_costs(config)
        return cls(model_shape(config)[1], base_params, module_costs)


def measure_module_costs(config: Any) -> tuple[int, tuple[tuple[str, int, int], ...]]:
    """The base model's parameter count and each module's per-layer cost, on the meta device.

    Builds the model of ``config`` (a ``transformers`` config) with no weights
    allocated, adds each module with ``adapters`` at the sizes
    ``MEASURED_SIZES`` in one layer and in all layers, and counts its
    deployable parameters (:func:`deployable_params`).

    Returns:
        ``(base_params, ((module, per_unit, fixed), ...))``.

    Raises:
        UnsupportedError: ``adapters`` does not support the model type, or a
            module's count differs between layers (one per-layer cost would be wrong).
    """
    import adapters
    import torch

    from autopeft_ray.models import model_shape

    num_layers, hidden_size = model_shape(config)
    with torch.device("meta"):
        net = _meta_model(config)
        # The classifier's base model, not AutoModel: RoBERTa's classifier has no pooler.
        base_params = sum(p.numel() for p in net.base_model.parameters())
        try:
            adapters.init(net)
        except ValueError as exc:
            raise UnsupportedError(
                f"Model type {config.model_type!r} is not supported by adapters: {exc}"
            ) from exc
        base_ids = {id(p) for p in net.base_model.parameters()}
        head = [p for p in net.parameters() if id(p) not in base_ids]
        costs = []
        for module in MODULES:
            counts = []
            for size in MEASURED_SIZES:
                one, every = (
                    _count(net, module, size, hidden_size, leave_out, head)
                    for leave_out in (range(1, num_layers), ())
                )
                if every != one * num_layers:
                    raise UnsupportedError(
                        f"The {module!r} module of size {size} has {every} parameters over "
                        f"{num_layers} layers of model type {config.model_type!r}, not "
                        f"{num_layers} x {one}: its layers differ, so no per-layer cost is exact."
                    )
                counts.append(one)
            (s1, s2), (c1, c2) = MEASURED_SIZES, counts
            per_unit = (c2 - c1) // (s2 - s1)
            costs.append((module, per_unit, c1 - per_unit * s1))
    return int(base_params), tuple(costs)


def _meta_model(config: Any) -> Any:
    from transformers import AutoModel, AutoModelForSequenceClassification

    try:
        return AutoModelForSequenceClassification.from_config(config)
    except ValueError:  # a model type without a sequence classifier: its base model
        return AutoModel.from_config(config)


def _count(
    net: Any, module: str, size: int, hidden_size: int, leave_out: Any, head: list[Any]
) -> int:
    name = f"measure_{module}_{size}"
    config = adapter_config(module, size, hidden_size=hidden_size, leave_out=leave_out)
    with quiet_activation_warning():
        net.add_adapter(name, config=config)
        net.train_adapter(name)
        count = deployable_params(net, exclude=head)
        net.delete_adapter(name)
    return count


def deployable_params(model: Any, *, exclude: Any = ()) -> int:
    """Parameters that train and are kept: reparametrised prefixes count as their flat prefix.

    Args:
        model: a model prepared with ``adapters.init``.
        exclude: parameters not to count (the task head).
    """
    from adapters.methods.prefix_tuning import PrefixTuning

    skip = {id(p) for p in exclude}
    flat_prefix = 0
    for module in model.modules():
        if isinstance(module, PrefixTuning) and any(p.requires_grad for p in module.parameters()):
            # What eject_prefix_tuning keeps: one key and one value vector per position and
            # layer, over the key/value heads (fewer than the query heads under grouped-query
            # attention).
            flat_prefix += (
                module.config.prefix_length * module.n_layers * 2 * module.n_heads
            ) * module.n_embd_per_head
            skip |= {id(p) for p in module.parameters()}
    kept = sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in skip)
    return int(kept + flat_prefix)
