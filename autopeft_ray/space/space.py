"""The AutoPEFT search space over a model: dimensions, validation, sampling, neighbours.

Sizes are ``{0} U {2^k <= hidden size}`` on a binary-log scale, and LoRA
ranks ``{0} U {2^k <= min(hidden size, 64)}``. The paper's space (``full``:
serial and parallel adapters, prefixes, layers) is the default; its ablated
spaces (Table 3) search fewer modules or fix every layer on. ``full-lora``
adds the LoRA rank to the paper's space, and ``lora``/``lora-layer`` search
LoRA alone, the counterparts of ``sa``/``sa-layer``.

A space built for a model (:meth:`SearchSpace.from_model_config`) also fixes
at 0 the modules ``adapters`` cannot build on the model's family
(:mod:`.support`): searchers never propose them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopeft_ray.exceptions import SearchSpaceError, invalid_value

from . import encoding
from .configuration import MODULES, SIZE_KEYS, PeftConfiguration, layer_key
from .support import refused_modules

#: The paper's ablated spaces (Table 3): which modules are searched, and
#: whether the layer bits are searched (otherwise every layer is on).
VARIANTS: dict[str, tuple[tuple[str, ...], bool]] = {
    "sa": (("sa",), False),
    "sa-layer": (("sa",), True),
    "sa-pa-layer": (("sa", "pa"), True),
    "full": (("sa", "pa", "pt"), True),
    "lora": (("lora",), False),
    "lora-layer": (("lora",), True),
    "full-lora": (("sa", "pa", "pt", "lora"), True),
}
#: The variant holding every module: any configuration of a model is a member of it.
WIDEST_VARIANT = "full-lora"
#: The largest LoRA rank searched: LoRA is used at ranks 4-64; above, it costs as much as
#: a wide adapter without being one.
MAX_LORA_RANK = 64


def size_choices(hidden_size: int, maximum: int | None = None) -> tuple[int, ...]:
    """``(0, 1, 2, 4, ..., 2^k)`` with ``2^k <= hidden_size`` (and ``<= maximum``)."""
    if isinstance(hidden_size, bool) or not isinstance(hidden_size, int) or hidden_size < 1:
        raise invalid_value("hidden_size", hidden_size, expected="a positive integer")
    top = hidden_size if maximum is None else min(hidden_size, maximum)
    return (0,) + tuple(2**k for k in range(int(math.log2(top)) + 1))


def module_choices(module: str, hidden_size: int) -> tuple[int, ...]:
    """The sizes a module takes on a model of width ``hidden_size`` (0 = absent)."""
    return size_choices(hidden_size, MAX_LORA_RANK if module == "lora" else None)


@dataclass(frozen=True)
class Dimension:
    """One searched coordinate: its config key and its ordered choices."""

    name: str
    choices: tuple[int, ...]


@dataclass(frozen=True)
class SearchSpace:
    """The AutoPEFT space for a model with ``num_layers`` layers of ``hidden_size``.

    Args:
        num_layers: transformer layers (one insertion bit each).
        hidden_size: model width; sizes are ``{0} U {2^k <= hidden_size}`` (LoRA ranks
            stop at ``MAX_LORA_RANK``).
        variant: ``"full"`` (SA-PA-PT-Layer) or an ablation from ``VARIANTS``.
        narrowed: ``(key, values)`` pairs that restrict searched keys to a subset
            of their values (:meth:`narrow`); a key narrowed to one value is fixed.
        refused: ``(module, why)`` pairs of modules the model's family cannot
            build (:func:`.support.refused_modules`): fixed at 0, kept by
            :meth:`narrow` and :meth:`unnarrowed`.
    """

    num_layers: int
    hidden_size: int
    variant: str = "full"
    narrowed: tuple[tuple[str, tuple[int, ...]], ...] = ()
    refused: tuple[tuple[str, str], ...] = ()
    sizes: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.num_layers, bool) or not isinstance(self.num_layers, int):
            raise invalid_value("num_layers", self.num_layers, expected="a positive integer")
        if self.num_layers < 1:
            raise invalid_value("num_layers", self.num_layers, expected="a positive integer")
        if self.variant not in VARIANTS:
            raise invalid_value(
                "variant",
                self.variant,
                valid=VARIANTS,
                fix="Pick a search space by the names of the paper's ablations.",
                cls=SearchSpaceError,
            )
        object.__setattr__(self, "sizes", size_choices(self.hidden_size))
        object.__setattr__(self, "refused", tuple((str(m), str(w)) for m, w in self.refused))
        for module, _ in self.refused:
            if module not in MODULES:
                raise invalid_value("refused module", module, valid=MODULES, cls=SearchSpaceError)
        if not self.modules:
            raise invalid_value(
                "variant",
                self.variant,
                expected="a space with a module this model family can build",
                fix=" ".join(why for _, why in self.refused),
                cls=SearchSpaceError,
            )
        full = {d.name: d.choices for d in self._full_dimensions()}
        for key, values in self.narrowed:
            if key not in full:
                raise invalid_value(
                    "narrowed key",
                    key,
                    valid=sorted(full),
                    fix=f"The '{self.variant}' space searches only these keys.",
                    cls=SearchSpaceError,
                )
            bad = [v for v in values if v not in full[key]]
            if not values or bad:
                raise invalid_value(
                    key,
                    list(values),
                    expected=f"a non-empty subset of {list(full[key])}",
                    fix="Sizes are 0 or powers of two up to the hidden size; layer bits 0 or 1.",
                    cls=SearchSpaceError,
                )

    def narrow(self, values: Mapping[str, Sequence[int]]) -> SearchSpace:
        """This space with searched keys restricted to some of their values.

        A key narrowed to one value is fixed there; narrowing again intersects.
        Raises ``SearchSpaceError`` naming the key when a value is not in the space.
        """
        current = dict(self.narrowed)
        full = {d.name: d.choices for d in self._full_dimensions()}
        for key, chosen in values.items():
            allowed = current.get(key, full.get(key))
            kept = tuple(v for v in (allowed or ()) if v in set(chosen))
            if allowed is None or len(kept) != len(set(chosen)):
                outside = sorted(set(chosen) - set(kept))
                raise invalid_value(
                    key,
                    outside if allowed is not None else key,
                    expected=f"values in {list(allowed)}" if allowed else "a searched key",
                    fix="Narrow a searched key to some of its values (sizes: 0 or powers of "
                    "two up to the hidden size; layer bits: 0 or 1).",
                    cls=SearchSpaceError,
                )
            current[key] = kept
        return SearchSpace(
            self.num_layers,
            self.hidden_size,
            self.variant,
            tuple(sorted(current.items())),
            self.refused,
        )

    def unnarrowed(self) -> SearchSpace:
        """The space before :meth:`narrow` (the family's refused modules stay refused)."""
        return SearchSpace(self.num_layers, self.hidden_size, self.variant, refused=self.refused)

    # -- construction -----------------------------------------------------
    @classmethod
    def from_model_config(cls, config: Any, variant: str = "full") -> SearchSpace:
        """Build the space from a ``transformers`` config, a config dict, or a checkpoint.

        ``config`` may be a ``PretrainedConfig``, a dict as in ``config.json``,
        or a hub name / local path (read with ``AutoConfig.from_pretrained``).
        The layer count and hidden size come from the config (encoders and
        decoders alike), and the modules ``adapters`` cannot build on its
        family are fixed at 0 (:mod:`.support`).
        """
        from autopeft_ray.models import load_config, model_family, model_shape

        if isinstance(config, (str, Path)):
            config = load_config(str(config))
        num_layers, hidden_size = model_shape(config)
        if variant not in VARIANTS:  # named before the family is looked at
            return cls(num_layers, hidden_size, variant)
        refused = refused_modules(model_family(config), VARIANTS[variant][0])
        return cls(num_layers, hidden_size, variant, refused=tuple(refused.items()))

    # -- structure --------------------------------------------------------
    @property
    def modules(self) -> tuple[str, ...]:
        """The modules this space searches: the variant's, less those the family refuses."""
        refused = dict(self.refused)
        return tuple(m for m in VARIANTS[self.variant][0] if m not in refused)

    @property
    def searches_layers(self) -> bool:
        return VARIANTS[self.variant][1]

    def choices_of(self, module: str) -> tuple[int, ...]:
        """The sizes ``module`` (``"sa"``, ``"pa"``, ``"pt"``, ``"lora"``) takes before narrowing."""
        return module_choices(module, self.hidden_size)

    def _full_dimensions(self) -> tuple[Dimension, ...]:
        dims = [Dimension(SIZE_KEYS[m], self.choices_of(m)) for m in self.modules]
        if self.searches_layers:
            dims += [Dimension(layer_key(i), (0, 1)) for i in range(self.num_layers)]
        return tuple(dims)

    @property
    def dimensions(self) -> tuple[Dimension, ...]:
        """The searched coordinates, in encoding order: sizes, then layer bits.

        A narrowed key searches its remaining values; one narrowed to a single
        value is not searched (see :meth:`fixed`).
        """
        narrowed = dict(self.narrowed)
        dims = [Dimension(d.name, narrowed.get(d.name, d.choices)) for d in self._full_dimensions()]
        return tuple(d for d in dims if len(d.choices) > 1)

    @property
    def cardinality(self) -> int:
        """Points of the space (every degenerate configuration counted)."""
        return math.prod(len(d.choices) for d in self.dimensions)

    def values(self, key: str) -> tuple[int, ...]:
        """The values a key takes in this space (searched, narrowed or fixed)."""
        fixed = self.fixed()
        if key in fixed:
            return (fixed[key],)
        return next(d.choices for d in self.dimensions if d.name == key)

    @property
    def num_distinct(self) -> int:
        """Distinct models in the space: every degenerate configuration is one model.

        Models with a module somewhere are the size combinations with a nonzero
        size times the layer masks with a layer on; all degenerate
        configurations (:attr:`PeftConfiguration.is_degenerate`) add one model
        if the space holds any.
        """
        size_sets = [self.values(SIZE_KEYS[m]) for m in MODULES]
        layer_sets = [self.values(layer_key(i)) for i in range(self.num_layers)]
        sizes_can_be_zero = all(0 in values for values in size_sets)
        layers_can_be_off = all(0 in values for values in layer_sets)
        with_module = math.prod(len(v) for v in size_sets) - sizes_can_be_zero
        layers_on = math.prod(len(v) for v in layer_sets) - layers_can_be_off
        return with_module * layers_on + (sizes_can_be_zero or layers_can_be_off)

    def fixed(self) -> dict[str, int]:
        """The keys this space does not search, with their fixed values."""
        fixed = {SIZE_KEYS[m]: 0 for m in MODULES if m not in self.modules}
        if not self.searches_layers:
            fixed.update({layer_key(i): 1 for i in range(self.num_layers)})
        fixed.update({key: values[0] for key, values in self.narrowed if len(values) == 1})
        return fixed

    def keys(self) -> list[str]:
        """Every configuration key of a trial config, searched or fixed."""
        return [*SIZE_KEYS.values(), *(layer_key(i) for i in range(self.num_layers))]

    # -- validation -------------------------------------------------------
    def validate(self, config: PeftConfiguration) -> PeftConfiguration:
        """Return ``config`` if it lies in this space, else raise naming the field."""
        if config.num_layers != self.num_layers:
            raise invalid_value(
                "layers",
                config.num_layers,
                expected=f"{self.num_layers} insertion bits (one per model layer)",
                cls=SearchSpaceError,
            )
        flat = config.to_dict()
        narrowed = dict(self.narrowed)
        for key, value in self.fixed().items():
            if flat[key] != value:
                raise invalid_value(
                    key,
                    flat[key],
                    valid=[value],
                    fix=self._fixed_because(key, narrowed),
                    cls=SearchSpaceError,
                )
        for dim in self.dimensions:
            if flat[dim.name] not in dim.choices:
                raise invalid_value(
                    dim.name,
                    flat[dim.name],
                    valid=dim.choices,
                    fix="The search space was narrowed to these values (param_space)."
                    if dim.name in narrowed
                    else _sizes_fix(dim.name, self.hidden_size),
                    cls=SearchSpaceError,
                )
        return config

    def _fixed_because(self, key: str, narrowed: Mapping[str, Any]) -> str:
        if key in narrowed:
            return "The search space was narrowed to it (param_space)."
        why = dict(self.refused).get(next((m for m in MODULES if SIZE_KEYS[m] == key), ""))
        if why:
            return why
        return (
            f"The '{self.variant}' search space fixes it; use variant='{_variant_searching(key)}'."
        )

    def representative(self, config: PeftConfiguration) -> PeftConfiguration:
        """Like :meth:`PeftConfiguration.model_key`, but always a member of this space.

        A degenerate configuration maps to all sizes 0 with the layer bits this
        space fixes (searched bits off); when the space keeps some size above 0,
        to every layer off with the smallest sizes. A live configuration must
        already be a member and is returned unchanged.
        """
        if not config.is_degenerate:
            return self.validate(config)
        sizes = {key: self.values(key) for key in SIZE_KEYS.values()}
        bits = [self.values(layer_key(i)) for i in range(self.num_layers)]
        if all(0 in values for values in sizes.values()):
            flat = {key: 0 for key in sizes} | {
                layer_key(i): values[0] for i, values in enumerate(bits)
            }
        elif all(0 in values for values in bits):
            flat = {key: values[0] for key, values in sizes.items()} | {
                layer_key(i): 0 for i in range(self.num_layers)
            }
        else:
            raise invalid_value(
                "configuration",
                config.describe(),
                expected="a configuration with a module somewhere: this space holds no "
                "head-only model",
                cls=SearchSpaceError,
            )
        return self.validate(PeftConfiguration.from_dict(flat))

    def configuration(self, **values: Any) -> PeftConfiguration:
        """Build and validate a configuration; unsearched fields take their fixed value.

        ``layers`` may be a sequence of bits or of active layer indices via
        ``active_layers=[...]``.
        """
        flat: dict[str, Any] = {k: 0 for k in SIZE_KEYS.values()}
        flat.update({layer_key(i): 1 for i in range(self.num_layers)})
        flat.update(self.fixed())
        active = values.pop("active_layers", None)
        layers = values.pop("layers", None)
        unknown = set(values) - set(SIZE_KEYS.values())
        if unknown:
            raise invalid_value(
                "configuration field",
                sorted(unknown)[0],
                valid=list(SIZE_KEYS.values()) + ["layers", "active_layers"],
                cls=SearchSpaceError,
            )
        flat.update(values)
        if active is not None:
            for i in active:
                if not isinstance(i, int) or not 0 <= i < self.num_layers:
                    raise invalid_value(
                        "active_layers",
                        i,
                        expected=f"a layer index in 0..{self.num_layers - 1}",
                        cls=SearchSpaceError,
                    )
            layers = [i in set(active) for i in range(self.num_layers)]
        if layers is not None:
            if len(layers) != self.num_layers:
                raise invalid_value(
                    "layers",
                    list(layers),
                    expected=f"{self.num_layers} insertion bits (one per model layer)",
                    cls=SearchSpaceError,
                )
            flat.update({layer_key(i): int(bool(b)) for i, b in enumerate(layers)})
        return self.validate(PeftConfiguration.from_dict(flat))

    def from_trial_config(self, config: Mapping[str, Any]) -> PeftConfiguration:
        """Read a configuration out of a Ray Tune trial config (extra keys ignored)."""
        flat = dict(self.fixed())
        flat.update(
            {k: v for k, v in config.items() if k in SIZE_KEYS.values() or k.startswith("layer_")}
        )
        return self.validate(PeftConfiguration.from_dict(flat))

    # -- encodings --------------------------------------------------------
    def to_param_space(self) -> dict[str, Any]:
        """A Ray Tune ``param_space`` / ``config`` (``tune.choice`` per dimension)."""
        from ray import tune

        space: dict[str, Any] = dict(self.fixed())
        space.update({d.name: tune.choice(list(d.choices)) for d in self.dimensions})
        return space

    def to_ax_parameters(self) -> list[Any]:
        """Ax ``ChoiceParameterConfig`` list for ``Client.configure_experiment``."""
        from ax.api.configs import ChoiceParameterConfig

        return [
            ChoiceParameterConfig(
                name=d.name, values=list(d.choices), parameter_type="int", is_ordered=True
            )
            for d in self.dimensions
        ]

    def encode(self, config: PeftConfiguration) -> list[float]:
        """Numeric vector in ``[0, 1]^d`` (see :func:`.encoding.encode`)."""
        return encoding.encode(self, config)

    def decode(self, vector: Sequence[float]) -> PeftConfiguration:
        """Inverse of :meth:`encode` (see :func:`.encoding.decode`)."""
        return encoding.decode(self, vector)

    def encoded_choices(self) -> list[list[float]]:
        """Per dimension, the encoded values allowed (BoTorch ``discrete_choices``)."""
        return encoding.encoded_choices(self)

    # -- exploration ------------------------------------------------------
    def neighbours(self, config: PeftConfiguration) -> list[PeftConfiguration]:
        """Configurations one change away: a size one step up or down, or one bit flipped."""
        self.validate(config)
        flat = config.to_dict()
        out = []
        for d in self.dimensions:
            rank = d.choices.index(flat[d.name])
            for step in (-1, 1):
                if 0 <= rank + step < len(d.choices):
                    moved = dict(flat)
                    moved[d.name] = d.choices[rank + step]
                    out.append(PeftConfiguration.from_dict(moved))
        return out

    def sample(self, rng: random.Random) -> PeftConfiguration:
        """A configuration drawn uniformly from the space."""
        flat: dict[str, Any] = dict(self.fixed())
        flat.update({d.name: rng.choice(d.choices) for d in self.dimensions})
        return PeftConfiguration.from_dict(flat)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "variant": self.variant,
        }
        if self.narrowed:
            data["narrowed"] = {key: list(values) for key, values in self.narrowed}
        if self.refused:
            data["refused"] = dict(self.refused)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        space = cls(
            int(data["num_layers"]),
            int(data["hidden_size"]),
            str(data.get("variant", "full")),
            refused=tuple(dict(data.get("refused") or {}).items()),
        )
        return space.narrow(data["narrowed"]) if data.get("narrowed") else space


def _sizes_fix(key: str, hidden_size: int) -> str:
    if key == SIZE_KEYS["lora"]:
        top = min(hidden_size, MAX_LORA_RANK)
        return f"LoRA ranks are 0 or powers of two up to {top}."
    if key in SIZE_KEYS.values():
        return f"Sizes are 0 or powers of two up to the hidden size {hidden_size}."
    return "Layer bits are 0 or 1."


def _variant_searching(key: str) -> str:
    """The smallest of the paper's spaces (or ``full-lora``) that searches ``key``."""
    return WIDEST_VARIANT if key == SIZE_KEYS["lora"] else "full"
