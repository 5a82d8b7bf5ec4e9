"""PEFTBench: a table of real PEFT trainings, and lookups into it.

The table (``benchmarks/peftbench/``) holds one row per real training: a
configuration of the search space (or a preset, or head-only), a fidelity, a
training seed, and what the training measured: its dev and test scores, its
parameter fraction, its train loss and its seconds. Searches can then be
replayed over the rows in minutes instead of days, as HPO benchmarks built on
tables of real trainings do (tabular benchmarks: the configurations a replay
may propose are the tabulated ones).

The key of a row is ``(key, fidelity, seed)``: ``key`` names the configuration
(:func:`configuration_key`), ``fidelity`` is a multiple of the search fidelity
(1 = the search's budget, 4 = "full"), and ``seed`` is the training seed.
The key holds every dimension of the space, LoRA rank included, so that rows
trained before and after a dimension was added share one table.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopeft_ray.exceptions import invalid_value
from autopeft_ray.space import PeftConfiguration

#: The rows' file and the manifest, in the table's folder.
RECORDS_FILE = "records.parquet"
MANIFEST_FILE = "manifest.json"
#: Columns that identify a row.
KEY_COLUMNS = ("key", "fidelity", "seed")
#: Prefix of a preset's key.
PRESET_PREFIX = "preset:"


def configuration_key(configuration: PeftConfiguration | str) -> str:
    """The table's name for a configuration: its model key (:meth:`PeftConfiguration.model_key`), or ``preset:<name>``.

    Every degenerate configuration (head-only) has one key. The LoRA rank is
    part of the key whether or not the space searches it.
    """
    if isinstance(configuration, str):
        return PRESET_PREFIX + configuration
    config = configuration.model_key()
    layers = "".join("1" if on else "0" for on in config.layers)
    return (
        f"sa{config.sa_size}-pa{config.pa_size}-pt{config.pt_length}"
        f"-lora{getattr(config, 'lora_rank', 0)}-L{layers}"
    )


def configuration_of(key: str) -> PeftConfiguration | str:
    """Inverse of :func:`configuration_key`."""
    if key.startswith(PRESET_PREFIX):
        return key[len(PRESET_PREFIX) :]
    try:
        sizes, _, layers = key.rpartition("-L")
        values = dict(_split_size(part) for part in sizes.split("-"))
        bits = tuple(c == "1" for c in layers)
        fields: dict[str, Any] = {
            "sa_size": values["sa"],
            "pa_size": values["pa"],
            "pt_length": values["pt"],
            "layers": bits,
        }
    except (KeyError, ValueError):
        raise invalid_value(
            "key", key, expected="sa<D>-pa<D>-pt<L>-lora<R>-L<bits> or preset:<name>"
        ) from None
    if values.get("lora", 0):
        fields["lora_rank"] = values["lora"]
    return PeftConfiguration(**fields)


def _split_size(part: str) -> tuple[str, int]:
    name = part.rstrip("0123456789")
    return name, int(part[len(name) :])


def log_fraction_bins(fractions: Mapping[str, float], width: float = 0.5) -> dict[int, list[str]]:
    """Keys grouped by ``floor(log10(fraction) / width)`` (half-decade bins by default)."""
    bins: dict[int, list[str]] = {}
    for key, fraction in fractions.items():
        if fraction > 0:
            bins.setdefault(math.floor(math.log10(fraction) / width), []).append(key)
    return {b: sorted(keys) for b, keys in sorted(bins.items())}


def stratified_draw(
    fractions: Mapping[str, float], count: int, rng: random.Random, width: float = 0.5
) -> list[str]:
    """``count`` keys spread evenly over the log-fraction bins (uniform draws under-fill cheap bins).

    Each bin gets an equal share; a bin with fewer keys than its share gives
    them all, and the rest is shared among the other bins. Keys with fraction 0
    are never drawn.
    """
    bins = log_fraction_bins(fractions, width)
    available = sum(len(keys) for keys in bins.values())
    if count > available:
        raise invalid_value("count", count, expected=f"at most {available} (the keys available)")
    quota = dict.fromkeys(bins, 0)
    left, open_bins = count, [b for b in bins if bins[b]]
    while left and open_bins:
        share = max(1, left // len(open_bins))
        for b in list(open_bins):
            take = min(share, len(bins[b]) - quota[b], left)
            quota[b] += take
            left -= take
            if quota[b] == len(bins[b]):
                open_bins.remove(b)
            if not left:
                break
    drawn: list[str] = []
    for b, keys in bins.items():
        drawn += rng.sample(keys, quota[b])
    return drawn


@dataclass(frozen=True)
class Row:
    """One training of the table."""

    key: str
    fidelity: int
    seed: int
    dev_score: float
    test_score: float
    param_fraction: float
    seconds: float
    #: The build stage that trained it (``space``, ``ablation``, ...); empty in a table
    #: written without one.
    stage: str = ""

    @property
    def configuration(self) -> PeftConfiguration | str:
        return configuration_of(self.key)


class PeftBench:
    """The rows of a table folder, indexed by key and fidelity.

    Args:
        folder: the table's folder (holding ``records.parquet``).
    """

    def __init__(self, folder: str | Path) -> None:
        import pyarrow.parquet as pq

        path = Path(folder) / RECORDS_FILE
        if not path.is_file():
            raise invalid_value(
                "table folder",
                str(folder),
                expected=f"a folder holding {RECORDS_FILE}",
                fix="Build it with benchmarks/peftbench/build.py, or pass its folder.",
            )
        self.folder = Path(folder)
        self.columns: dict[str, list[Any]] = pq.read_table(path).to_pydict()
        count = len(self.columns["key"])
        stages = self.columns.get("stage") or [""] * count
        self.rows = [
            Row(
                key=k,
                fidelity=int(f),
                seed=int(s),
                dev_score=float(d),
                test_score=float(t),
                param_fraction=float(p),
                seconds=float(w),
                stage=str(g or ""),
            )
            for k, f, s, d, t, p, w, g in zip(
                self.columns["key"],
                self.columns["fidelity"],
                self.columns["seed"],
                self.columns["dev_score"],
                self.columns["test_score"],
                self.columns["param_fraction"],
                self.columns["seconds"],
                stages,
                strict=True,
            )
        ]
        self._index: dict[tuple[str, int], list[Row]] = {}
        for row in self.rows:
            self._index.setdefault((row.key, row.fidelity), []).append(row)
        for rows in self._index.values():
            rows.sort(key=lambda r: r.seed)

    def __len__(self) -> int:
        return len(self.rows)

    def keys(self, fidelity: int = 1, *, presets: bool = False) -> list[str]:
        """Keys with at least one row at ``fidelity`` (configurations only, unless ``presets``)."""
        return sorted(
            k
            for k, f in self._index
            if f == fidelity and (presets or not k.startswith(PRESET_PREFIX))
        )

    def configurations(self, fidelity: int = 1) -> list[PeftConfiguration]:
        """The tabulated configurations of the space at ``fidelity`` (presets left out)."""
        out = []
        for key in self.keys(fidelity):
            config = configuration_of(key)
            assert isinstance(config, PeftConfiguration)
            out.append(config)
        return out

    def key_of(self, configuration: PeftConfiguration | str) -> str:
        """The key of a configuration, a preset name, or a key (returned as it is)."""
        if isinstance(configuration, str) and (
            configuration.startswith(PRESET_PREFIX) or "-L" in configuration
        ):
            return configuration
        return configuration_key(configuration)

    def rows_of(self, configuration: PeftConfiguration | str, fidelity: int = 1) -> list[Row]:
        """Every seed's row of a configuration (or preset name, or key) at a fidelity."""
        return list(self._index.get((self.key_of(configuration), fidelity), []))

    def lookup(
        self,
        configuration: PeftConfiguration | str,
        fidelity: int = 1,
        rng: random.Random | None = None,
    ) -> Row:
        """One row of the configuration: a seed drawn with ``rng``, or the first seed.

        Raises:
            ConfigurationError: the configuration has no row at this fidelity.
        """
        rows = self.rows_of(configuration, fidelity)
        if not rows:
            raise invalid_value(
                "configuration",
                self.key_of(configuration),
                expected=f"a configuration with a row at fidelity {fidelity}",
                fix="Restrict the search to the table's configurations (candidates=...).",
            )
        return rows[0] if rng is None else rng.choice(rows)

    def mean(self, configuration: PeftConfiguration | str, fidelity: int, column: str) -> float:
        """The mean of ``column`` (``dev_score``, ``test_score``) over the seeds' rows."""
        rows = self.rows_of(configuration, fidelity)
        if not rows:
            return math.nan
        return sum(float(getattr(r, column)) for r in rows) / len(rows)


def seeds_of(rows: Iterable[Row]) -> Sequence[int]:
    return sorted({r.seed for r in rows})
