"""Configuration -> PEFT model, with the AdapterHub ``adapters`` library.

A :class:`~autopeft_ray.space.PeftConfiguration` becomes a transformers
sequence classifier (its own head, which trains) with, in each layer whose bit
is on:

* ``"sa"``: a serial bottleneck adapter after the FFN (``SeqBnConfig``,
  Pfeiffer placement, output site only) of bottleneck size D_SA;
* ``"pa"``: a parallel bottleneck adapter beside the FFN (``ParBnConfig``,
  output site) of size D_PA;
* ``"pt"``: prefix tuning on the attention keys and values
  (``PrefixTuningConfig``) of length L_PT.

A module of size 0 is absent; a degenerate configuration (see
:mod:`autopeft_ray.space`) builds the head-only model. The modules are
activated as ``Stack("pa", "sa", "pt")``; when both bottlenecks are present
the stock ``Stack`` computes the wrong function, so the builder installs
:mod:`autopeft_ray.composition` (its docstring gives the exact math). Named
presets (:mod:`autopeft_ray.presets`) are built the same way.

Every configuration and preset trains the same full task head
(:func:`task_head_parameters`): what the classifier adds on top of the base
model (BERT's output layer; RoBERTa's dense + output layers) and the base
model's pooler where it has one (BERT's dense + tanh over [CLS]), as the
``adapters`` library's own classification heads train a dense and an output
layer. With the pretrained pooler frozen, a linear layer over it learned
nothing in a short run (FACTS.md, "frozen pooler").

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
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopeft_ray.composition import enable_parallel_then_serial
from autopeft_ray.exceptions import (
    ConfigurationError,
    ModelLoadError,
    SearchSpaceError,
    UnsupportedError,
    invalid_value,
)
from autopeft_ray.models import DEFAULT_MODEL, load_config, resolve_model
from autopeft_ray.presets import PRESET_NAMES, get_preset
from autopeft_ray.space import PeftConfiguration, SearchSpace

#: Adapter names, in the order they are stacked (parallel branches first).
SA, PA, PT = "sa", "pa", "pt"
STACK_ORDER = (PA, SA, PT)
#: ``composition`` values of :func:`adapter_setup_dict`.
STACK, PARALLEL_THEN_SERIAL, HEAD_ONLY, FULL = "stack", "parallel_then_serial", "head_only", "full"
#: Files written by :func:`save_adapters` next to the adapter folders.
SETUP_FILE = "autopeft_setup.json"
HEAD_FILE = "task_head.safetensors"
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
    """

    model: Any
    configuration: PeftConfiguration | str
    trainable_params: int
    head_params: int
    base_params: int
    trained_params: int
    setup: dict[str, Any]

    @property
    def param_fraction(self) -> float:
        """``trainable_params / base_params``, the cost objective."""
        return self.trainable_params / self.base_params

    @property
    def active_setup(self) -> Any:
        """The ``adapters`` composition block in use (``None`` when no module is added)."""
        return _stack(self.setup)


def adapter_setup_dict(
    configuration: PeftConfiguration | str, *, hidden_size: int | None = None
) -> dict[str, Any]:
    """What to add to a plain ``adapters`` model to get this configuration.

    Args:
        configuration: a ``PeftConfiguration`` or a preset name.
        hidden_size: the model width; needed when a bottleneck size is set
            (``adapters`` takes ``reduction_factor = hidden_size / D``).

    Returns:
        A JSON-ready dict: ``adapters`` (name -> ``adapters`` config dict, pass
        each to ``model.add_adapter(name, config=...)``), ``active`` (names to
        activate as ``Stack(*active)``), ``composition`` (``"stack"``;
        ``"parallel_then_serial"``: also call
        :func:`autopeft_ray.composition.enable_parallel_then_serial`;
        ``"head_only"``; ``"full"``: no module, every weight trains) and
        ``configuration``.
    """
    import adapters

    if isinstance(configuration, str):
        preset = get_preset(configuration)
        if preset.is_full:
            return _setup({}, FULL, configuration)
        return _setup({preset.name: preset.adapter_config().to_dict()}, STACK, configuration)
    if not isinstance(configuration, PeftConfiguration):
        raise _bad_configuration(configuration)
    described = configuration.to_dict()
    if configuration.is_degenerate:
        return _setup({}, HEAD_ONLY, described)
    off = [i for i, on in enumerate(configuration.layers) if not on]
    needs_width = configuration.sa_size or configuration.pa_size
    if needs_width and not (_is_int(hidden_size) and int(hidden_size or 0) >= 1):
        raise invalid_value(
            "hidden_size",
            hidden_size,
            expected="the model's hidden size (a positive integer)",
            fix="Bottleneck sizes are set through reduction_factor = hidden_size / size.",
        )
    width = int(hidden_size or 0)
    configs: dict[str, Any] = {}
    if configuration.pa_size:
        configs[PA] = adapters.ParBnConfig(
            reduction_factor=_reduction(width, configuration.pa_size, "pa_size"), leave_out=off
        )
    if configuration.sa_size:
        configs[SA] = adapters.SeqBnConfig(
            reduction_factor=_reduction(width, configuration.sa_size, "sa_size"), leave_out=off
        )
    if configuration.pt_length:
        configs[PT] = adapters.PrefixTuningConfig(
            prefix_length=configuration.pt_length, leave_out=off
        )
    composition = PARALLEL_THEN_SERIAL if SA in configs and PA in configs else STACK
    return _setup({k: v.to_dict() for k, v in configs.items()}, composition, described)


def build_peft_model(
    model: str,
    configuration: PeftConfiguration | str,
    *,
    num_labels: int,
    problem_type: str | None = None,
    seed: int | None = None,
) -> BuiltModel:
    """Build a sequence classifier with the PEFT modules of ``configuration``, ready to train.

    Base weights are frozen (except for the ``"full"`` preset); the modules and
    the task head (:func:`task_head_parameters`) train.

    Args:
        model: a hub name, a local checkpoint folder, or ``DEFAULT_MODEL``.
        configuration: a ``PeftConfiguration`` (validated against the model's
            search space before anything is built) or a preset name.
        num_labels: output size of the classification head (1 for regression).
        problem_type: transformers' ``problem_type`` (``None`` infers it).
        seed: seeds the head and module initialisation (the global RNG is left as it was).

    Raises:
        SearchSpaceError: the configuration does not fit the model's space.
        ConfigurationError: unknown preset, bad ``num_labels``/``problem_type``/``seed``.
        ModelLoadError: the model cannot be found or loaded.
    """
    if not _is_int(num_labels) or num_labels < 1:
        raise invalid_value("num_labels", num_labels, expected="a positive integer")
    if problem_type not in PROBLEM_TYPES:
        raise invalid_value("problem_type", problem_type, valid=PROBLEM_TYPES)
    if seed is not None and not _is_int(seed):
        raise invalid_value("seed", seed, expected="an integer or None")
    if isinstance(configuration, str):
        get_preset(configuration)  # an unknown name fails before the model is read
    elif not isinstance(configuration, PeftConfiguration):
        raise _bad_configuration(configuration)
    model_config = load_config(model)
    hidden_size = int(model_config.hidden_size)
    if isinstance(configuration, PeftConfiguration):
        SearchSpace.from_model_config(model_config).validate(configuration)
    setup = adapter_setup_dict(configuration, hidden_size=hidden_size)

    with _seeded(seed):
        net = _load_classifier(model, num_labels, problem_type)
        base_params = _numel(net.base_model.parameters())
        head = task_head_parameters(net)
        with _quiet_activation_warning():
            _attach(net, setup, model)
    for p in head:
        p.requires_grad = True
    if isinstance(configuration, PeftConfiguration):
        _check_bottleneck_sizes(net, configuration)
    full = setup["composition"] == FULL
    return BuiltModel(
        model=net,
        configuration=configuration,
        trainable_params=base_params if full else deployable_params(net, exclude=head),
        head_params=_numel(head),
        base_params=base_params,
        trained_params=_numel(p for p in net.parameters() if p.requires_grad),
        setup=setup,
    )


def task_head_parameters(model: Any) -> list[Any]:
    """The task head of a transformers sequence classifier, which trains in every configuration.

    Everything the classifier adds on top of its base model (BERT: the output
    layer; RoBERTa, ELECTRA: dense + output layer), plus the base model's
    pooler when it has one (BERT: dense + tanh over [CLS]).
    """
    base = model.base_model
    base_ids = {id(p) for p in base.parameters()}
    head = [p for p in model.parameters() if id(p) not in base_ids]
    pooler = getattr(base, "pooler", None)
    if pooler is not None:
        head += list(pooler.parameters())
    return head


def _task_head_state(model: Any) -> dict[str, Any]:
    head = {id(p) for p in task_head_parameters(model)}
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if id(p) in head}


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
            # What eject_prefix_tuning keeps: one key and one value vector per position and layer.
            flat_prefix += (
                module.config.prefix_length * module.n_layers * 2 * module.n_heads
            ) * module.n_embd_per_head
            skip |= {id(p) for p in module.parameters()}
    kept = _numel(p for p in model.parameters() if p.requires_grad and id(p) not in skip)
    return kept + flat_prefix


def save_adapters(built: BuiltModel, directory: str | os.PathLike[str]) -> Path:
    """Save what was trained so that plain ``adapters`` can load it (see :func:`load_adapters`).

    Writes one folder per adapter (``model.save_all_adapters``), or
    ``model/`` (``save_pretrained``) for full fine-tuning, plus
    ``task_head.safetensors`` (the trained task head, pooler included, which
    ``adapters``' own head saving leaves out because the pooler sits in the
    base model) and ``autopeft_setup.json`` (:func:`adapter_setup_dict`).
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    net, composition = built.model, built.setup["composition"]
    if composition == FULL:
        net.save_pretrained(str(out / "model"))
    else:
        from safetensors.torch import save_file

        if composition != HEAD_ONLY:
            net.save_all_adapters(str(out))
        save_file(_task_head_state(net), str(out / HEAD_FILE))
    (out / SETUP_FILE).write_text(json.dumps(built.setup, indent=2) + "\n")
    return out


def load_adapters(model: Any, directory: str | os.PathLike[str]) -> Any:
    """Load a :func:`save_adapters` folder into a fresh classifier of the same base model.

    Uses plain ``adapters`` calls (``load_adapter``, ``set_active_adapters``)
    plus :func:`~autopeft_ray.composition.enable_parallel_then_serial` when the
    setup holds both bottlenecks, and loads the task head with
    ``model.load_state_dict(safetensors.torch.load_file(HEAD_FILE), strict=False)``.
    Returns the active composition block.
    """
    import adapters
    from safetensors.torch import load_file

    folder = Path(directory)
    if not (folder / SETUP_FILE).is_file():
        raise invalid_value(
            "directory", str(folder), expected=f"a folder written by save_adapters ({SETUP_FILE})"
        )
    setup = json.loads((folder / SETUP_FILE).read_text())
    if setup["composition"] == FULL:
        raise invalid_value(
            "directory",
            str(folder),
            expected="saved adapters",
            fix=f"Full fine-tuning saved a whole model: from_pretrained('{folder / 'model'}').",
        )
    adapters.init(model)
    loaded = model.load_state_dict(load_file(str(folder / HEAD_FILE)), strict=False)
    if loaded.unexpected_keys:
        raise invalid_value(
            "directory",
            str(folder),
            expected="a task head of this model's architecture",
            fix=f"Load it into the base model it was trained on (unexpected: {loaded.unexpected_keys[:3]}).",
        )
    for name in setup["active"]:
        model.load_adapter(str(folder / name), load_as=name)
    if setup["composition"] == PARALLEL_THEN_SERIAL:
        enable_parallel_then_serial(model)
    active = _stack(setup)
    with _quiet_activation_warning():
        model.set_active_adapters(active)
    return active


# -- internals ------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reduction(width: int, size: int, field: str) -> float:
    """``adapters``' reduction factor for a bottleneck of exactly ``size`` units."""
    factor = width / size
    if int(width // factor) != size:  # adapters builds int(hidden_size // factor) units
        raise invalid_value(
            field,
            size,
            expected=f"a size adapters can build exactly on hidden size {width}",
            fix="Use 0 or a power of two up to the hidden size.",
            cls=SearchSpaceError,
        )
    return factor


def _setup(configs: dict[str, Any], composition: str, configuration: Any) -> dict[str, Any]:
    return {
        "configuration": configuration,
        "adapters": configs,
        "active": list(configs),
        "composition": composition,
    }


def _stack(setup: dict[str, Any]) -> Any:
    if not setup["active"]:
        return None
    from adapters.composition import Stack

    return Stack(*setup["active"])


def _bad_configuration(value: Any) -> ConfigurationError:
    return invalid_value(
        "configuration",
        value,
        expected=f"a PeftConfiguration or a preset name ({', '.join(PRESET_NAMES)})",
    )


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    import torch

    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        yield


class _DropActivationWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "none are activated" not in record.getMessage()


@contextlib.contextmanager
def _quiet_activation_warning() -> Iterator[None]:
    # adapters warns "adapters available but none are activated" from inside
    # set_active_adapters itself (reset_adapter runs a ForwardContext before the
    # setup is stored): misleading while building, so it is dropped there only.
    logger = logging.getLogger("adapters.model_mixin")
    drop = _DropActivationWarning()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _load_classifier(name: str, num_labels: int, problem_type: str | None) -> Any:
    from transformers import AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"num_labels": num_labels}
    if problem_type is not None:
        kwargs["problem_type"] = problem_type
    try:
        return AutoModelForSequenceClassification.from_pretrained(resolve_model(name), **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first_line = (str(exc).splitlines() or [""])[0]
        raise ModelLoadError(
            f"`model` {name!r} could not be loaded as a sequence classifier: "
            f"{exc.__class__.__name__}: {first_line}. Pass a checkpoint with a "
            f"sequence-classification architecture (BERT, RoBERTa, ...) or {DEFAULT_MODEL!r}."
        ) from exc


def _attach(net: Any, setup: dict[str, Any], name: str) -> None:
    import adapters

    try:
        adapters.init(net)
    except ValueError as exc:
        raise UnsupportedError(
            f"`model` {name!r} (model type {net.config.model_type!r}) is not supported by "
            f"adapters: {exc}. Pick a model type adapters supports (BERT, RoBERTa, ...)."
        ) from exc
    for adapter_name, adapter_config in setup["adapters"].items():
        net.add_adapter(adapter_name, config=adapter_config)
    if setup["composition"] == PARALLEL_THEN_SERIAL:
        enable_parallel_then_serial(net)
    active = _stack(setup)
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
