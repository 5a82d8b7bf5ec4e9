"""The searchers' state file: versioned, portable JSON (no pickled library objects)."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autopeft_ray.exceptions import invalid_value
from autopeft_ray.space import SearchSpace

STATE_FORMAT = "autopeft-ray-searcher"
STATE_VERSION = 1


def header(searcher_name: str) -> dict[str, Any]:
    return {"format": STATE_FORMAT, "version": STATE_VERSION, "searcher": searcher_name}


def check_header(state: Mapping[str, Any], searcher_name: str, space: SearchSpace) -> None:
    """Raise unless ``state`` was written by ``searcher_name`` on ``space``."""
    if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
        raise invalid_value(
            "searcher state",
            {k: state.get(k) for k in ("format", "version")},
            expected=f"format {STATE_FORMAT!r} version {STATE_VERSION}",
        )
    if state.get("searcher") != searcher_name:
        raise invalid_value(
            "searcher state",
            state.get("searcher"),
            valid=[searcher_name],
            fix="Restore into the same searcher class that saved it.",
        )
    saved = state["settings"]["space"]
    if SearchSpace.from_dict(saved).unnarrowed() != space.unnarrowed():
        raise invalid_value(
            "searcher state space",
            saved,
            valid=[space.to_dict()],
            fix="Restore into a searcher built on the same search space.",
        )


def rng_to_json(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def rng_from_json(rng: random.Random, data: list[Any]) -> None:
    version, internal, gauss = data
    rng.setstate((version, tuple(internal), gauss))


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    """Write atomically (Tune may read the folder while a search runs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, allow_nan=False))
    tmp.replace(path)


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise invalid_value("checkpoint_path", str(path), expected="an existing state file")
    return json.loads(path.read_text())
