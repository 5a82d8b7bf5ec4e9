"""The run folder: one object owns every path in it, and every read and write.

Layout of a run folder (``RunFolder`` names each file once):

* ``search.json``      the search options (what ``--resume``, ``report``,
  ``evaluate`` and ``transfer`` read back);
* ``trials.jsonl``     one line per completed, early-stopped or failed trial,
  appended and flushed as each one ends: it survives a crash;
* ``trials.csv``       the same as a table;
* ``pareto.json`` / ``pareto.csv``  the non-dominated configurations;
* ``baselines.json``   baselines trained at the search fidelity, and
  ``baselines/``, Ray Tune's folder for them;
* ``adapters/<n>/``    per Pareto member, the ``adapters`` setup a user loads
  without this project (``adapter_setup.json``, ``configuration.json``);
* ``report/``          the report (``report.md`` and its figures);
* ``tune/``            Ray Tune's own experiment folder (``Tuner.restore``).

A trial's status is one of :data:`autopeft_ray.objectives.STATUSES`.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autopeft_ray.config import PRESET_KEY, TRIAL_SETTINGS_KEY, SearchOptions
from autopeft_ray.exceptions import invalid_value
from autopeft_ray.objectives import (
    BEST_SCORE,
    COMPLETED,
    EARLY_STOPPED,
    FAILED,
    FIDELITY,
    PARAM_FRACTION,
    SCORE,
    TARGET_FIDELITY,
)

#: Result keys kept in a trial record besides the task metrics (``metric_*``, ``test_*``).
KEPT_RESULT_KEYS = (
    SCORE,
    BEST_SCORE,
    PARAM_FRACTION,
    FIDELITY,
    TARGET_FIDELITY,
    "train_loss",
    "train_samples_per_second",
    "time_total_s",
    "node_ip",
    "node_id",
    "training_iteration",
    "seconds_to_first_step",
)
#: Statuses written by earlier versions, read as today's.
_OLD_STATUSES = {"stopped_early": EARLY_STOPPED, "error": FAILED}


def ended_status(result: Mapping[str, Any] | None) -> str:
    """``completed`` if a result reached its target fidelity, else ``early_stopped``."""
    result = result or {}
    done = result.get(FIDELITY, 0) >= result.get(TARGET_FIDELITY, 0)
    return COMPLETED if done else EARLY_STOPPED


def trial_record(
    trial_id: str,
    config: Mapping[str, Any],
    result: Mapping[str, Any] | None,
    status: str,
    error: str | None = None,
) -> dict[str, Any]:
    """One line of ``trials.jsonl``: configuration, metrics, fidelity and status."""
    configuration = {k: v for k, v in config.items() if k != TRIAL_SETTINGS_KEY}
    metrics = {
        key: value
        for key, value in (result or {}).items()
        if key in KEPT_RESULT_KEYS or key.startswith(("metric_", "test_"))
    }
    return {
        "trial_id": trial_id,
        "status": status,
        "configuration": configuration,
        "metrics": metrics,
        "error": error,
        "finished_at": time.time(),
    }


def objective_point(record: Mapping[str, Any]) -> tuple[float, float]:
    """``(score, param_fraction)`` of a trial record."""
    return float(record["metrics"][SCORE]), float(record["metrics"][PARAM_FRACTION])


def completed_points(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of trials that reached their target fidelity and have both objectives."""
    return [
        r
        for r in records
        if r["status"] == COMPLETED and SCORE in r["metrics"] and PARAM_FRACTION in r["metrics"]
    ]


def pareto_records(done: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The completed records on the Pareto front, by increasing parameter fraction."""
    from autopeft_ray.objectives.pareto import pareto_mask

    if not done:
        return []
    mask = pareto_mask([objective_point(r) for r in done])
    front = [r for r, keep in zip(done, mask, strict=True) if keep]
    return sorted(front, key=lambda r: r["metrics"][PARAM_FRACTION])


class RunFolder:
    """A search's run folder (see the module docstring for its layout).

    Args:
        path: the folder; created by the first write.
    """

    OPTIONS = "search.json"
    TRIALS = "trials.jsonl"
    TRIALS_CSV = "trials.csv"
    PARETO = "pareto.json"
    PARETO_CSV = "pareto.csv"
    BASELINES = "baselines.json"
    BASELINES_DIR = "baselines"
    ADAPTERS = "adapters"
    REPORT = "report"
    TUNE = "tune"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        """The path of one of the names above."""
        return self.path / name

    @property
    def tune_dir(self) -> Path:
        return self.path / self.TUNE

    @property
    def report_dir(self) -> Path:
        return self.path / self.REPORT

    # -- search options --------------------------------------------------------
    def has_options(self) -> bool:
        return self.file(self.OPTIONS).is_file()

    def read_options(self) -> SearchOptions:
        """The options the search was started with (``search.json``)."""
        path = self.file(self.OPTIONS)
        if not path.is_file():
            raise invalid_value(
                "run folder",
                str(self.path),
                expected=f"a folder written by `autopeft-ray search` (with {self.OPTIONS})",
            )
        return SearchOptions.from_dict(json.loads(path.read_text()))

    def write_options(self, options: SearchOptions) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.file(self.OPTIONS).write_text(json.dumps(options.to_dict(), indent=2) + "\n")

    # -- trial records -----------------------------------------------------------
    def append_record(self, record: Mapping[str, Any]) -> None:
        """Append one ended trial to ``trials.jsonl`` and flush it to disk."""
        self.path.mkdir(parents=True, exist_ok=True)
        with self.file(self.TRIALS).open("a") as f:
            f.write(json.dumps(record, default=float) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_records(self) -> list[dict[str, Any]]:
        """All trial records, the latest per trial id (a resumed trial ends once more)."""
        path = self.file(self.TRIALS)
        if not path.exists():
            return []
        latest: dict[str, dict[str, Any]] = {}
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                record["status"] = _OLD_STATUSES.get(record["status"], record["status"])
                latest[record["trial_id"]] = record
        return list(latest.values())

    def completed(self) -> list[dict[str, Any]]:
        """Completed records with both objectives, in the order they ended."""
        return sorted(completed_points(self.read_records()), key=lambda r: r["finished_at"])

    # -- what a finished search writes -------------------------------------------
    def write_tables(self, records: list[dict[str, Any]], pareto: list[dict[str, Any]]) -> None:
        """``trials.csv``, ``pareto.json`` and ``pareto.csv``."""
        self.path.mkdir(parents=True, exist_ok=True)
        _write_csv(self.file(self.TRIALS_CSV), records)
        self.file(self.PARETO).write_text(json.dumps(pareto, indent=2, default=float) + "\n")
        _write_csv(self.file(self.PARETO_CSV), pareto)

    def read_pareto(self) -> list[dict[str, Any]]:
        """The Pareto set (``pareto.json``)."""
        path = self.file(self.PARETO)
        if not path.exists():
            raise invalid_value(
                "run folder", str(self.path), expected=f"a finished search (with {self.PARETO})"
            )
        return list(json.loads(path.read_text()))

    def adapter_folder(self, rank: int) -> Path:
        return self.path / self.ADAPTERS / f"{rank:02d}"

    def write_baselines(self, rows: list[dict[str, Any]]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.file(self.BASELINES).write_text(json.dumps(rows, indent=2) + "\n")

    def read_baselines(self) -> list[dict[str, Any]]:
        """The baselines trained at the search fidelity (``baselines.json``), if any."""
        path = self.file(self.BASELINES)
        return list(json.loads(path.read_text())) if path.exists() else []

    def has_baselines(self) -> bool:
        return self.file(self.BASELINES).exists()


def _write_csv(path: Path, records: list[dict[str, Any]]) -> None:
    rows = []
    for r in records:
        row = {"trial_id": r["trial_id"], "status": r["status"]}
        row.update({k: v for k, v in r["configuration"].items() if k != PRESET_KEY})
        if PRESET_KEY in r["configuration"]:
            row[PRESET_KEY] = r["configuration"][PRESET_KEY]
        row.update(r["metrics"])
        rows.append(row)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns or ["trial_id"])
        writer.writeheader()
        writer.writerows(rows)
