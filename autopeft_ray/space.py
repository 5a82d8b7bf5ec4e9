"""The AutoPEFT search space (arXiv 2301.12132, section 3).

A configuration chooses a serial adapter size D_SA, a parallel adapter size
D_PA and a prefix length L_PT, each in ``{0} U {2^k <= hidden size}`` (0 means
the module is absent), and one insertion bit per transformer layer.

Degenerate configurations. When no layer bit is on, or every module size is 0,
no PEFT module is inserted anywhere: only the task head trains. These
configurations are valid (they are the cheapest point of every Pareto front)
and all of them are the same model, so :meth:`PeftConfiguration.canonical`
maps each of them to one representative (all sizes 0, every layer off), which
searchers use to avoid evaluating the same model twice. That representative is
an identity key: in a space that fixes the layers (``sa``, ``sa-pa``) it is not
a member; :meth:`SearchSpace.canonical` gives the member of a given space.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopeft_ray.exceptions import SearchSpaceError, invalid_value

#: Module keys, in the order they appear in encodings.
MODULES = ("sa", "pa", "pt")
MODULE_NAMES = {"sa": "serial adapter", "pa": "parallel adapter", "pt": "prefix tuning"}
_SIZE_KEYS = {"sa": "sa_size", "pa": "pa_size", "pt": "pt_length"}

#: The paper's ablated spaces (Table 3): which modules are searched, and
#: whether the layer bits are searched (otherwise every layer is on).
VARIANTS: dict[str, tuple[tuple[str, ...], bool]] = {
    "sa": (("sa",), False),
    "sa-layer": (("sa",), True),
    "sa-pa-layer": (("sa", "pa"), True),
    "full": (("sa", "pa", "pt"), True),
}


def size_choices(hidden_size: int) -> tuple[int, ...]:
    """``(0, 1, 2, 4, ..., 2^k)`` with ``2^k <= hidden_size``."""
    if hidden_size < 1:
        raise invalid_value("hidden_size", hidden_size, expected="a positive integer")
    return (0,) + tuple(2**k for k in range(int(math.log2(hidden_size)) + 1))


def layer_key(index: int) -> str:
    return f"layer_{index}"


@dataclass(frozen=True)
class PeftConfiguration:
    """One point of the search space.

    Attributes:
        sa_size: serial adapter bottleneck size D_SA (0 = no serial adapter).
        pa_size: parallel adapter bottleneck size D_PA (0 = no parallel adapter).
        pt_length: prefix length L_PT (0 = no prefix tuning).
        layers: one insertion bit per transformer layer.
    """

    sa_size: int
    pa_size: int
    pt_length: int
    layers: tuple[bool, ...]

    def __post_init__(self) -> None:
        for key in ("sa_size", "pa_size", "pt_length"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise invalid_value(
                    key, value, expected="a non-negative integer", cls=SearchSpaceError
                )
        object.__setattr__(self, "layers", tuple(bool(b) for b in self.layers))
        if not self.layers:
            raise invalid_value(
                "layers",
                self.layers,
                expected="one bit per transformer layer",
                cls=SearchSpaceError,
            )

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def active_layers(self) -> tuple[int, ...]:
        return tuple(i for i, on in enumerate(self.layers) if on)

    def size(self, module: str) -> int:
        return int(getattr(self, _SIZE_KEYS[module]))

    @property
    def is_degenerate(self) -> bool:
        """True when no PEFT module is inserted anywhere (only the head trains)."""
        return not self.active_layers or all(self.size(m) == 0 for m in MODULES)

    def canonical(self) -> PeftConfiguration:
        """The representative of this configuration's model (see module docstring)."""
        if self.is_degenerate:
            return PeftConfiguration(0, 0, 0, (False,) * self.num_layers)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Flat, JSON-ready dict; also the Ray Tune trial config keys."""
        out: dict[str, Any] = {_SIZE_KEYS[m]: self.size(m) for m in MODULES}
        out.update({layer_key(i): int(on) for i, on in enumerate(self.layers)})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PeftConfiguration:
        """Inverse of :meth:`to_dict`; extra keys (fixed trial settings) are ignored."""
        missing = [k for k in _SIZE_KEYS.values() if k not in data]
        if missing:
            raise invalid_value(
                "configuration",
                sorted(data),
                expected=f"a dict with keys {missing} and layer_0 ... layer_<L-1>",
                cls=SearchSpaceError,
            )
        indices = sorted(
            int(k.split("_", 1)[1])
            for k in data
            if k.startswith("layer_") and k.split("_", 1)[1].isdigit()
        )
        if indices != list(range(len(indices))) or not indices:
            raise invalid_value(
                "configuration layers",
                [layer_key(i) for i in indices],
                expected="contiguous keys layer_0 ... layer_<L-1>",
                cls=SearchSpaceError,
            )
        layers = []
        for i in indices:
            bit = data[layer_key(i)]
            if bit not in (0, 1, True, False):
                raise invalid_value(layer_key(i), bit, valid=[0, 1], cls=SearchSpaceError)
            layers.append(bool(bit))
        return cls(
            sa_size=_as_int("sa_size", data["sa_size"]),
            pa_size=_as_int("pa_size", data["pa_size"]),
            pt_length=_as_int("pt_length", data["pt_length"]),
            layers=tuple(layers),
        )

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> PeftConfiguration:
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            path = Path(text)
            if not path.is_file():
                raise invalid_value(
                    "configuration file", text, expected="a JSON object or a path to one"
                )
            text = path.read_text()
        return cls.from_dict(json.loads(text))

    def describe(self) -> str:
        layers = "".join("1" if b else "0" for b in self.layers)
        return f"SA={self.sa_size} PA={self.pa_size} PT={self.pt_length} layers={layers}"


def _as_int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise invalid_value(key, value, expected="an integer", cls=SearchSpaceError)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    raise invalid_value(key, value, expected="an integer", cls=SearchSpaceError)


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
        hidden_size: model width; sizes are ``{0} U {2^k <= hidden_size}``.
        variant: ``"full"`` (SA-PA-PT-Layer) or an ablation from ``VARIANTS``.
    """

    num_layers: int
    hidden_size: int
    variant: str = "full"
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

    # -- construction -----------------------------------------------------
    @classmethod
    def from_model_config(cls, config: Any, variant: str = "full") -> SearchSpace:
        """Build the space from a ``transformers`` config, a config dict, or a checkpoint.

        ``config`` may be a ``PretrainedConfig``, a dict as in ``config.json``,
        or a hub name / local path (read with ``AutoConfig.from_pretrained``).
        """
        if isinstance(config, (str, Path)):
            from autopeft_ray.models import load_config

            config = load_config(str(config))
        get = config.get if isinstance(config, Mapping) else lambda k: getattr(config, k, None)
        num_layers = _first(get, ("num_hidden_layers", "n_layer", "num_layers"))
        hidden_size = _first(get, ("hidden_size", "n_embd", "d_model", "dim"))
        if num_layers is None or hidden_size is None:
            raise invalid_value(
                "model config",
                type(config).__name__,
                expected="a transformer config with num_hidden_layers and hidden_size",
            )
        return cls(int(num_layers), int(hidden_size), variant)

    # -- structure --------------------------------------------------------
    @property
    def modules(self) -> tuple[str, ...]:
        return VARIANTS[self.variant][0]

    @property
    def searches_layers(self) -> bool:
        return VARIANTS[self.variant][1]

    @property
    def dimensions(self) -> tuple[Dimension, ...]:
        """The searched coordinates, in encoding order: sizes, then layer bits."""
        dims = [Dimension(_SIZE_KEYS[m], self.sizes) for m in self.modules]
        if self.searches_layers:
            dims += [Dimension(layer_key(i), (0, 1)) for i in range(self.num_layers)]
        return tuple(dims)

    @property
    def cardinality(self) -> int:
        return math.prod(len(d.choices) for d in self.dimensions)

    def _fixed(self) -> dict[str, int]:
        fixed = {_SIZE_KEYS[m]: 0 for m in MODULES if m not in self.modules}
        if not self.searches_layers:
            fixed.update({layer_key(i): 1 for i in range(self.num_layers)})
        return fixed

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
        for key, value in self._fixed().items():
            if flat[key] != value:
                raise invalid_value(
                    key,
                    flat[key],
                    valid=[value],
                    fix=f"The '{self.variant}' search space fixes it; use variant='full'.",
                    cls=SearchSpaceError,
                )
        for dim in self.dimensions:
            if flat[dim.name] not in dim.choices:
                raise invalid_value(
                    dim.name,
                    flat[dim.name],
                    valid=dim.choices,
                    fix=f"Sizes are 0 or powers of two up to the hidden size {self.hidden_size}.",
                    cls=SearchSpaceError,
                )
        return config

    def canonical(self, config: PeftConfiguration) -> PeftConfiguration:
        """Like :meth:`PeftConfiguration.canonical`, but always a member of this space.

        A degenerate configuration maps to all sizes 0 with the layer bits this
        space fixes (every layer on when layers are not searched, else all off);
        a live one must already be a member and is returned unchanged.
        """
        if not config.is_degenerate:
            return self.validate(config)
        return self.configuration(
            layers=[not self.searches_layers] * self.num_layers,
        )

    def configuration(self, **values: Any) -> PeftConfiguration:
        """Build and validate a configuration; unsearched fields take their fixed value.

        ``layers`` may be a sequence of bits or of active layer indices via
        ``active_layers=[...]``.
        """
        flat: dict[str, Any] = {k: 0 for k in _SIZE_KEYS.values()}
        flat.update({layer_key(i): 1 for i in range(self.num_layers)})
        active = values.pop("active_layers", None)
        layers = values.pop("layers", None)
        unknown = set(values) - set(_SIZE_KEYS.values())
        if unknown:
            raise invalid_value(
                "configuration field",
                sorted(unknown)[0],
                valid=list(_SIZE_KEYS.values()) + ["layers", "active_layers"],
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
        flat = dict(self._fixed())
        flat.update(
            {k: v for k, v in config.items() if k in _SIZE_KEYS.values() or k.startswith("layer_")}
        )
        return self.validate(PeftConfiguration.from_dict(flat))

    # -- encodings --------------------------------------------------------
    def to_param_space(self) -> dict[str, Any]:
        """A Ray Tune ``param_space`` / ``config`` (``tune.choice`` per dimension)."""
        from ray import tune

        space: dict[str, Any] = dict(self._fixed())
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
        """Numeric vector in ``[0, 1]^d``: sizes by their log-scale rank, layer bits as 0/1."""
        self.validate(config)
        flat = config.to_dict()
        return [d.choices.index(flat[d.name]) / (len(d.choices) - 1) for d in self.dimensions]

    def decode(self, vector: Sequence[float]) -> PeftConfiguration:
        """Inverse of :meth:`encode`; each coordinate is rounded to the nearest choice."""
        dims = self.dimensions
        if len(vector) != len(dims):
            raise invalid_value(
                "vector", list(vector), expected=f"{len(dims)} coordinates", cls=SearchSpaceError
            )
        flat: dict[str, Any] = dict(self._fixed())
        for d, x in zip(dims, vector, strict=True):
            rank = min(max(round(float(x) * (len(d.choices) - 1)), 0), len(d.choices) - 1)
            flat[d.name] = d.choices[rank]
        return PeftConfiguration.from_dict(flat)

    def encoded_choices(self) -> list[list[float]]:
        """Per dimension, the encoded values allowed (BoTorch ``discrete_choices``)."""
        return [[i / (len(d.choices) - 1) for i in range(len(d.choices))] for d in self.dimensions]

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
        flat: dict[str, Any] = dict(self._fixed())
        flat.update({d.name: rng.choice(d.choices) for d in self.dimensions})
        return PeftConfiguration.from_dict(flat)

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "variant": self.variant,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        return cls(
            int(data["num_layers"]), int(data["hidden_size"]), str(data.get("variant", "full"))
        )


def _first(get: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        value = get(key)
        if value is not None:
            return value
    return None
