"""One point of the AutoPEFT search space (arXiv 2301.12132, section 3).

A configuration chooses a serial adapter size D_SA, a parallel adapter size
D_PA and a prefix length L_PT (0 means the module is absent), and one insertion
bit per transformer layer.

Degenerate configurations. When no layer bit is on, or every module size is 0,
no PEFT module is inserted anywhere: only the task head trains. These
configurations are valid (they are the cheapest point of every Pareto front)
and all of them are the same model, so :meth:`PeftConfiguration.model_key`
maps each of them to one representative (all sizes 0, every layer off), which
searchers use to avoid evaluating the same model twice. This module is the one
place that rule is defined; :mod:`.encoding` applies it to encoded vectors and
:meth:`SearchSpace.num_distinct` counts with it. The representative is an
identity key: in a space that fixes the layers (``sa``, ``sa-pa``) it is not a
member; :meth:`SearchSpace.representative` gives the member of a given space.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopeft_ray.exceptions import SearchSpaceError, invalid_value

#: Module keys, in the order they appear in encodings.
MODULES = ("sa", "pa", "pt", "lora")
MODULE_NAMES = {
    "sa": "serial adapter",
    "pa": "parallel adapter",
    "pt": "prefix tuning",
    "lora": "LoRA",
}
#: Trial-config key of each module's size.
SIZE_KEYS = {"sa": "sa_size", "pa": "pa_size", "pt": "pt_length", "lora": "lora_rank"}
#: Sizes that configurations written before a module existed may lack (read as 0).
OPTIONAL_SIZE_KEYS = ("lora_rank",)


def layer_key(index: int) -> str:
    """Trial-config key of layer ``index``'s insertion bit."""
    return f"layer_{index}"


@dataclass(frozen=True)
class PeftConfiguration:
    """One point of the search space.

    Attributes:
        sa_size: serial adapter bottleneck size D_SA (0 = no serial adapter).
        pa_size: parallel adapter bottleneck size D_PA (0 = no parallel adapter).
        pt_length: prefix length L_PT (0 = no prefix tuning).
        layers: one insertion bit per transformer layer.
        lora_rank: LoRA rank R_LoRA on the attention query and value (0 = no LoRA).
    """

    sa_size: int
    pa_size: int
    pt_length: int
    layers: tuple[bool, ...]
    lora_rank: int = 0

    def __post_init__(self) -> None:
        for key in SIZE_KEYS.values():
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
        return int(getattr(self, SIZE_KEYS[module]))

    @property
    def is_degenerate(self) -> bool:
        """True when no PEFT module is inserted anywhere (only the head trains)."""
        return not self.active_layers or all(self.size(m) == 0 for m in MODULES)

    def model_key(self) -> PeftConfiguration:
        """The key of the model this configuration builds: itself, or for a degenerate
        configuration their one representative (see the module docstring). Two
        configurations build the same model exactly when their keys are equal."""
        if self.is_degenerate:
            return PeftConfiguration(0, 0, 0, (False,) * self.num_layers, lora_rank=0)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Flat, JSON-ready dict; also the Ray Tune trial config keys."""
        out: dict[str, Any] = {SIZE_KEYS[m]: self.size(m) for m in MODULES}
        out.update({layer_key(i): int(on) for i, on in enumerate(self.layers)})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PeftConfiguration:
        """Inverse of :meth:`to_dict`; extra keys (fixed trial settings) are ignored.

        ``lora_rank`` may be missing (configurations written before LoRA was a
        dimension): it reads as 0.
        """
        missing = [k for k in SIZE_KEYS.values() if k not in data and k not in OPTIONAL_SIZE_KEYS]
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
            lora_rank=_as_int("lora_rank", data.get("lora_rank", 0)),
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
        return (
            f"SA={self.sa_size} PA={self.pa_size} PT={self.pt_length} LoRA={self.lora_rank} "
            f"layers={layers}"
        )


def _as_int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise invalid_value(key, value, expected="an integer", cls=SearchSpaceError)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    raise invalid_value(key, value, expected="an integer", cls=SearchSpaceError)
