"""Configuration -> PEFT model ready to train, with the AdapterHub ``adapters`` library.

A :class:`~autopeft_ray.space.PeftConfiguration` (or a preset name) becomes a
transformers sequence classifier, or a causal language model
(``kind=CAUSAL_LM``), with the modules of its adapter setup (:mod:`.setup`);
a degenerate configuration builds the head-only model. Encoders (BERT,
RoBERTa, ...) and decoders (GPT-2, Llama, Mistral) build the same way; a
module ``adapters`` cannot build on the model's family is refused before any
weight is loaded (:mod:`autopeft_ray.space.support`).

Every configuration and preset of a sequence classifier trains the same full
task head (:func:`task_head_parameters`): what the classifier adds on top of
the base model (BERT's output layer; RoBERTa's dense + output layers; a
decoder's ``score`` layer over the last real token, which transformers finds
through ``pad_token_id``) and the base model's pooler where it has one
(BERT's dense + tanh over [CLS]), as the ``adapters`` library's own
classification heads train a dense and an output layer. With the pretrained
pooler frozen, a linear layer over it learned nothing in a short run
(BENCHMARKS.md, "Learning-rate calibration"). A causal LM has no new head: its language-model
head is pretrained (on GPT-2, the input embedding itself) and stays frozen,
so its head-only model trains nothing and scores the base model as it is.

Parameter counts are taken from the built model: ``trainable_params`` are the
parameters trained and kept for deployment (the prefix reparametrisation MLP
replaced by the flat prefix it produces, the task head excluded: every method
has it), ``base_params`` the base model (pooler included) without the
classifier, and ``trained_params`` what the optimiser updates
(reparametrisation and head included). Full fine-tuning keeps every base
weight: its ``trainable_params`` is ``base_params``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from autopeft_ray.exceptions import ModelLoadError, UnsupportedError, invalid_value
from autopeft_ray.models import (
    CAUSAL_LM,
    DEFAULT_MODEL,
    SEQUENCE_CLASSIFICATION,
    TASK_KINDS,
    load_config,
    load_tokenizer,
    model_family,
    model_shape,
    resolve_model,
)
from autopeft_ray.objectives.cost import deployable_params
from autopeft_ray.space import WIDEST_VARIANT, PeftConfiguration, SearchSpace
from autopeft_ray.space.support import check_causal_lm, check_supported, quiet_activation_warning

from .composition import enable_parallel_then_serial
from .presets import get_preset
from .setup import (
    FULL,
    PA,
    PARALLEL_THEN_SERIAL,
    SA,
    active_stack,
    adapter_setup_dict,
    bad_configuration,
    is_int,
    use_eager_attention,
)

PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")


@dataclass
class BuiltModel:
    """A model ready to train, and its parameter counts.

    Attributes:
        model: the transformers model, prepared with ``adapters.init``.
        configuration: the ``PeftConfiguration`` or preset name it was built from.
        trainable_params: deployable PEFT parameters (head excluded, flat prefix).
        head_params: parameters of the task head (pooler and classifier; trains in
            every configuration, not counted in the cost).
        base_params: parameters of the base model without its head.
        trained_params: parameters the optimiser updates (reparametrisation and head included).
        setup: :func:`adapter_setup_dict` of the configuration.
        kind: ``SEQUENCE_CLASSIFICATION`` or ``CAUSAL_LM``.
    """

    model: Any
    configuration: PeftConfiguration | str
    trainable_params: int
    head_params: int
    base_params: int
    trained_params: int
    setup: dict[str, Any]
    kind: str = SEQUENCE_CLASSIFICATION

    @property
    def param_fraction(self) -> float:
        """``trainable_params / base_params``, the cost objective."""
        return self.trainable_params / self.base_params

    @property
    def active_setup(self) -> Any:
        """The ``adapters`` composition block in use (``None`` when no module is added)."""
        return active_stack(self.setup)


def build_peft_model(
    model: str,
    configuration: PeftConfiguration | str,
    *,
    num_labels: int | None = None,
    problem_type: str | None = None,
    seed: int | None = None,
    kind: str = SEQUENCE_CLASSIFICATION,
) -> BuiltModel:
    """Build a sequence classifier (or causal LM) with the modules of ``configuration``.

    Base weights are frozen (except for the ``"full"`` preset); the modules and
    the task head (:func:`task_head_parameters`) train. A decoder without a
    ``pad_token_id`` gets its tokenizer's pad token (its end-of-sequence token
    when it has none: :func:`autopeft_ray.models.fill_pad_token`).

    Args:
        model: a hub name, a local checkpoint folder, or ``DEFAULT_MODEL``.
        configuration: a ``PeftConfiguration`` (validated against the model's
            search space, and against what ``adapters`` builds on its family,
            before anything is built) or a preset name.
        num_labels: output size of the classification head (1 for regression);
            not used by a causal LM.
        problem_type: transformers' ``problem_type`` (``None`` infers it).
        seed: seeds the head and module initialisation (the global RNG is left as it was).
        kind: ``SEQUENCE_CLASSIFICATION`` or ``CAUSAL_LM`` (next-token loss, no new head).

    Raises:
        SearchSpaceError: the configuration does not fit the model's space.
        UnsupportedError: ``adapters`` cannot build the configuration on the
            model's family (the message names the family and the module).
        ConfigurationError: unknown preset, bad ``num_labels``/``problem_type``/``seed``/``kind``.
        ModelLoadError: the model cannot be found or loaded.
    """
    if kind not in TASK_KINDS:
        raise invalid_value("kind", kind, valid=TASK_KINDS)
    if kind == SEQUENCE_CLASSIFICATION and (not is_int(num_labels) or int(num_labels or 0) < 1):
        raise invalid_value("num_labels", num_labels, expected="a positive integer")
    if problem_type not in PROBLEM_TYPES:
        raise invalid_value("problem_type", problem_type, valid=PROBLEM_TYPES)
    if seed is not None and not is_int(seed):
        raise invalid_value("seed", seed, expected="an integer or None")
    if isinstance(configuration, str):
        get_preset(configuration)  # an unknown name fails before the model is read
    elif not isinstance(configuration, PeftConfiguration):
        raise bad_configuration(configuration)
    model_config = load_config(model)
    num_layers, hidden_size = model_shape(model_config)
    if isinstance(configuration, PeftConfiguration):
        # The widest space, not the family's: a module allowed only alone (LoRA on
        # GPT-2) is a member of the family's `lora` space but not of its `full-lora`.
        SearchSpace(num_layers, hidden_size, WIDEST_VARIANT).validate(configuration)
        check_supported(configuration, model_family(model_config))
    if kind == CAUSAL_LM:
        check_causal_lm(model_family(model_config))
    setup = adapter_setup_dict(configuration, hidden_size=hidden_size)
    loading: dict[str, Any] = {}
    if getattr(model_config, "pad_token_id", None) is None:
        loading["pad_token_id"] = load_tokenizer(model).pad_token_id
    if kind == SEQUENCE_CLASSIFICATION:
        loading["num_labels"] = num_labels
        if problem_type is not None:
            loading["problem_type"] = problem_type

    with _seeded(seed):
        net = _load_model(model, kind, loading)
        use_eager_attention(net, setup)
        base_params = _numel(net.base_model.parameters())
        head = task_head_parameters(net)
        with quiet_activation_warning():
            _attach(net, setup, model)
    full = setup["composition"] == FULL
    if kind == CAUSAL_LM and not full:
        # adapters freezes the base model only: the pretrained language-model head (and
        # any layer between it and the base model) is frozen here.
        base_ids = {id(p) for p in net.base_model.parameters()}
        for p in net.parameters():
            if id(p) not in base_ids:
                p.requires_grad = False
    for p in head:
        p.requires_grad = True
    if isinstance(configuration, PeftConfiguration):
        _check_bottleneck_sizes(net, configuration)
    return BuiltModel(
        model=net,
        configuration=configuration,
        trainable_params=base_params if full else deployable_params(net, exclude=head),
        head_params=_numel(head),
        base_params=base_params,
        trained_params=_numel(p for p in net.parameters() if p.requires_grad),
        setup=setup,
        kind=kind,
    )


def task_head_parameters(model: Any) -> list[Any]:
    """The task head of a transformers sequence classifier, which trains in every configuration.

    Everything the classifier adds on top of its base model (BERT: the output
    layer; RoBERTa, ELECTRA: dense + output layer; GPT-2, Llama, Mistral: the
    ``score`` layer over the last real token), plus the base model's pooler
    when it has one (BERT: dense + tanh over [CLS]). A causal LM has none: its
    language-model head is pretrained and stays frozen.
    """
    if is_causal_lm(model):
        return []
    base = model.base_model
    base_ids = {id(p) for p in base.parameters()}
    head = [p for p in model.parameters() if id(p) not in base_ids]
    pooler = getattr(base, "pooler", None)
    if pooler is not None:
        head += list(pooler.parameters())
    return head


def is_causal_lm(model: Any) -> bool:
    """True for a transformers causal language model (``GPT2LMHeadModel``, ``LlamaForCausalLM``)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return type(model).__name__ in set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())


# -- internals ------------------------------------------------------------------


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    import torch

    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def _load_model(name: str, kind: str, kwargs: dict[str, Any]) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = AutoModelForCausalLM if kind == CAUSAL_LM else AutoModelForSequenceClassification
    what = "a causal language model" if kind == CAUSAL_LM else "a sequence classifier"
    try:
        return auto.from_pretrained(resolve_model(name), **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first_line = (str(exc).splitlines() or [""])[0]
        raise ModelLoadError(
            f"`model` {name!r} could not be loaded as {what}: "
            f"{exc.__class__.__name__}: {first_line}. Pass a checkpoint of an architecture "
            f"with one (BERT, RoBERTa, GPT-2, Llama, Mistral, ...) or {DEFAULT_MODEL!r}."
        ) from exc


def _attach(net: Any, setup: dict[str, Any], name: str) -> None:
    import adapters

    try:
        adapters.init(net)
    except ValueError as exc:
        raise UnsupportedError(
            f"`model` {name!r} (model type {net.config.model_type!r}) is not supported by "
            f"adapters: {exc}. Pick a model type adapters supports (BERT, RoBERTa, GPT-2, "
            f"Llama, Mistral, ...)."
        ) from exc
    for adapter_name, adapter_config in setup["adapters"].items():
        net.add_adapter(adapter_name, config=adapter_config)
    if setup["composition"] == PARALLEL_THEN_SERIAL:
        enable_parallel_then_serial(net)
    active = active_stack(setup)
    if active is not None:
        net.train_adapter(active)
    elif setup["composition"] == FULL:
        net.train()
        for p in net.parameters():
            p.requires_grad = True
    else:
        net.freeze_model(True)
        net.train()


def _check_bottleneck_sizes(net: Any, config: PeftConfiguration) -> None:
    """Every bottleneck holds exactly D units, and only in the layers whose bit is on."""
    from adapters.methods.bottleneck import BottleneckLayer

    for index, layer in net.base_model.iter_layers():
        found: dict[str, Any] = {}
        for module in layer.modules():
            if isinstance(module, BottleneckLayer) and module.location_key == "output_adapter":
                found.update(module.adapters)
        for name in (SA, PA):
            expected = config.size(name) if config.layers[index] else 0
            got = found[name].adapter_up.in_features if name in found else 0
            if got != expected:
                raise UnsupportedError(
                    f"Layer {index}: adapter {name!r} has bottleneck size {got}, expected "
                    f"{expected}. adapters rounded hidden_size / reduction_factor; report this."
                )


def _numel(params: Any) -> int:
    return int(sum(p.numel() for p in params))
