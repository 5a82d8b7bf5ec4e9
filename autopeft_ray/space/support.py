"""What each module is in ``adapters``, and which modules a model family refuses.

:func:`adapter_config` is the one place a module of the space and its size
become an ``adapters`` configuration: the builder adds what it returns, and
the cost (:mod:`autopeft_ray.objectives.cost`) measures what it returns on a
meta-device copy of the model, so that the two cannot disagree.

``REFUSALS`` records, as data, what ``adapters`` 1.3.0 cannot build on a
family. It was found by building every combination of the four modules on
tiny random GPT-2, Llama and Mistral models, as sequence classifiers and as
causal LMs (``tests/builder/test_builder_decoders.py`` builds them again):

* GPT-2: LoRA works alone but not beside any other module. GPT-2 fuses the
  query, key and value projections into one ``c_attn``; ``adapters`` wraps it
  in ``LoRAMergedLinear``, whose forward takes an active setup of exactly one
  adapter and raises ``Cannot use Stack[...] with LoRA`` otherwise.
* Llama and Mistral: every module and every combination builds and trains
  (LoRA on ``q_proj``/``v_proj``, prefixes over grouped-query attention's
  key/value heads, the bottlenecks after the MLP).

Prefixes on these decoders need eager attention (``PREFIX_NEEDS_EAGER_ATTENTION``).
Under PyTorch's SDPA, transformers passes a boolean mask, or none at all for
a batch without padding: ``adapters`` prepends a prefix mask built for
additive float masks, which in a boolean mask hides the prefix from every
token; with no mask, SDPA's causal mask is aligned to the top left of the
longer key sequence, and each token loses sight of its own last ``L_PT``
tokens. The two disagree, and a token's output depends on the padding of the
batch it is in. Eager attention (float masks) gives the same output for a
sequence alone and padded in any batch (tested on the three families).

A :class:`~autopeft_ray.space.SearchSpace` built for a family fixes a refused
module at 0 (:func:`refused_modules`), so searchers never propose it, and the
builder raises :class:`~autopeft_ray.exceptions.UnsupportedError` on such a
configuration before loading any weight (:func:`check_supported`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from autopeft_ray.exceptions import SearchSpaceError, UnsupportedError, invalid_value

from .configuration import MODULE_NAMES, MODULES, PeftConfiguration

#: Decoder families whose modules and compositions are tested (tiny models of each).
DECODER_FAMILIES = ("gpt2", "llama", "mistral")
#: Families whose attention must be eager when a prefix is present (module docstring).
PREFIX_NEEDS_EAGER_ATTENTION = DECODER_FAMILIES


@dataclass(frozen=True)
class Refusal:
    """A module ``adapters`` cannot build on a model family.

    Attributes:
        family: the ``model_type`` of the family (``"gpt2"``).
        module: the refused module (one of ``MODULES``).
        alone: ``True`` when the module builds on its own and only its
            combination with another module is refused.
        reason: why, in one sentence.
    """

    family: str
    module: str
    alone: bool
    reason: str

    def __post_init__(self) -> None:
        if self.module not in MODULES:
            raise invalid_value("module", self.module, valid=MODULES)

    def message(self) -> str:
        """What a refused configuration's error says (family, module, reason and the way out)."""
        name = MODULE_NAMES[self.module]
        if self.alone:
            what = f"{name} together with another module"
            fix = f"Use {name} alone (--space lora or lora-layer), or the other modules without it."
        else:
            what = name
            fix = f"Use the other modules (--space full without {name})."
        return f"adapters cannot build {what} on model family {self.family!r}: {self.reason} {fix}"


REFUSALS: tuple[Refusal, ...] = (
    Refusal(
        "gpt2",
        "lora",
        alone=True,
        reason="GPT-2's fused query-key-value projection (c_attn) takes LoRA through "
        "adapters' LoRAMergedLinear, which accepts an active setup of one adapter only.",
    ),
)


def refusals_of(family: str) -> dict[str, Refusal]:
    """The refused modules of ``family``, by module."""
    return {r.module: r for r in REFUSALS if r.family == family}


def refused_modules(family: str, modules: Iterable[str]) -> dict[str, str]:
    """Which of the searched ``modules`` a space on ``family`` must fix at 0, with why.

    A module refused only in combination is kept when it is the only module searched.
    """
    searched = tuple(modules)
    out = {}
    for module, refusal in refusals_of(family).items():
        if module in searched and (not refusal.alone or len(searched) > 1):
            out[module] = refusal.message()
    return out


def check_supported(configuration: PeftConfiguration, family: str) -> PeftConfiguration:
    """Return ``configuration`` if ``adapters`` can build it on ``family``, else raise.

    Raises:
        UnsupportedError: naming the family, the module and what to use instead.
    """
    if configuration.is_degenerate:
        return configuration
    used = [m for m in MODULES if configuration.size(m) > 0]
    for module, refusal in refusals_of(family).items():
        if module in used and (not refusal.alone or len(used) > 1):
            raise UnsupportedError(
                f"Configuration {configuration.describe()} is refused: {refusal.message()}"
            )
    return configuration


def check_causal_lm(family: str) -> None:
    """Raise unless causal-LM fine-tuning is supported on ``family`` (one of ``DECODER_FAMILIES``).

    Encoders (BERT, RoBERTa, ...) attend both ways: as language models they
    would see the token they are asked to predict.

    Raises:
        UnsupportedError: naming the family and the decoder families to use instead.
    """
    if family not in DECODER_FAMILIES:
        raise UnsupportedError(
            f"Causal-LM fine-tuning needs a decoder, and model family {family!r} is not one "
            f"of the supported decoder families ({', '.join(DECODER_FAMILIES)}). Pass a GPT-2, "
            f"Llama or Mistral checkpoint as the model, or classify with this one (a task "
            f"without --causal-lm)."
        )


def adapter_config(
    module: str, size: int, *, hidden_size: int | None = None, leave_out: Iterable[int] = ()
) -> Any:
    """The ``adapters`` configuration of ``module`` at ``size`` (``size`` > 0).

    ``"sa"``: ``SeqBnConfig`` (Pfeiffer placement, after the feed-forward block)
    with exactly ``size`` bottleneck units; ``"pa"``: ``ParBnConfig`` (beside
    it); ``"pt"``: ``PrefixTuningConfig`` of length ``size``; ``"lora"``:
    ``LoRAConfig(r=size, alpha=size)`` on the attention query and value (its
    update scaled by 1 at every rank). Bottlenecks need ``hidden_size``:
    ``adapters`` takes ``reduction_factor = hidden_size / size``.

    Args:
        module: one of ``MODULES``.
        size: the module's size (bottleneck units, prefix length or rank).
        hidden_size: the model width (bottlenecks only).
        leave_out: layer indices without the module.
    """
    import adapters

    off = sorted(int(i) for i in leave_out)
    if module == "pt":
        return adapters.PrefixTuningConfig(prefix_length=size, leave_out=off)
    if module == "lora":
        return adapters.LoRAConfig(r=size, alpha=size, leave_out=off)
    if module not in ("sa", "pa"):
        raise invalid_value("module", module, valid=MODULES)
    if not (isinstance(hidden_size, int) and not isinstance(hidden_size, bool)) or hidden_size < 1:
        raise invalid_value(
            "hidden_size",
            hidden_size,
            expected="the model's hidden size (a positive integer)",
            fix="Bottleneck sizes are set through reduction_factor = hidden_size / size.",
        )
    factor = _reduction(hidden_size, size, f"{module}_size")
    factory = adapters.SeqBnConfig if module == "sa" else adapters.ParBnConfig
    return factory(reduction_factor=factor, leave_out=off)


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


class _DropActivationWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "none are activated" not in record.getMessage()


@contextlib.contextmanager
def quiet_activation_warning() -> Iterator[None]:
    """Drop ``adapters``' "adapters available but none are activated" while building.

    ``adapters`` logs it from inside ``set_active_adapters`` itself
    (``reset_adapter`` runs a ``ForwardContext`` before the setup is stored):
    misleading while a model is built or measured, so it is dropped there only.
    """
    logger = logging.getLogger("adapters.model_mixin")
    drop = _DropActivationWarning()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)
