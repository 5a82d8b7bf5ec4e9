"""The run folder: every measured trial, written as it finishes, and the Pareto set.

Layout of ``<output>/``:

* ``search.json``      the search options (what ``--resume`` reads back);
* ``trials.jsonl``     one line per finished, stopped or errored trial, appended
  and flushed as each one ends, by a Ray Tune callback: it survives a crash;
* ``trials.csv``       the same as a table;
* ``pareto.json`` / ``pareto.csv``  the non-dominated configurations;
* ``adapters/<n>/``    per Pareto member, the ``adapters`` configuration a user
  loads without this project (``adapter_setup.json``);
* ``tune/``            Ray Tune's own experiment folder (``Tuner.restore``).
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from autopeft_ray.objectives import (
    BEST_SCORE,
    FIDELITY,
    PARAM_FRACTION,
    SCORE,
    TARGET_FIDELITY,
)
from autopeft_ray.settings import PRESET_KEY, TRIAL_SETTINGS_KEY

TRIALS_FILE = "trials.jsonl"
_KEEP = (SCORE, BEST_SCORE, PARAM_FRACTION, FIDELITY, TARGET_FIDELITY)


def trial_record(
    trial_id: str,
    config: dict[str, Any],
    result: dict[str, Any] | None,
    status: str,
    error: str | None = None,
) -> dict[str, Any]:
    """One line of ``trials.jsonl``: configuration, metrics, fidelity and status."""
    configuration = {k: v for k, v in config.items() if k != TRIAL_SETTINGS_KEY}
    metrics = {}
    for key, value in (result or {}).items():
        if (
            key in _KEEP
            or key.startswith(("metric_", "test_"))
            or key
            in (
                "train_loss",
                "train_samples_per_second",
                "time_total_s",
                "node_ip",
                "node_id",
                "training_iteration",
                "seconds_to_first_step",
            )
        ):
            metrics[key] = value
    return {
        "trial_id": trial_id,
        "status": status,
        "configuration": configuration,
        "metrics": metrics,
        "error": error,
        "finished_at": time.time(),
    }


def append_record(folder: Path, record: dict[str, Any]) -> None:
    path = folder / TRIALS_FILE
    with path.open("a") as f:
        f.write(json.dumps(record, default=float) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_records(folder: str | Path) -> list[dict[str, Any]]:
    """All trial records, the latest per trial id (a resumed trial ends once more)."""
    path = Path(folder) / TRIALS_FILE
    if not path.exists():
        return []
    latest: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            latest[record["trial_id"]] = record
    return list(latest.values())


def ended_status(result: dict[str, Any] | None) -> str:
    """``completed`` if a trial reached its target fidelity, else ``stopped_early``."""
    result = result or {}
    done = result.get(FIDELITY, 0) >= result.get(TARGET_FIDELITY, 0)
    return "completed" if done else "stopped_early"


class TrialLog(Callback):
    """Ray Tune callback: append each ended trial to ``trials.jsonl`` and print a status line."""

    def __init__(self, folder: str | Path, reference_point: tuple[float, float]) -> None:
        self.folder = Path(folder)
        self.reference_point = reference_point

    def _log(self, trial: Any, status: str, error: str | None = None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        append_record(
            self.folder,
            trial_record(trial.trial_id, dict(trial.config), trial.last_result, status, error),
        )
        self._print_status()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._log(trial, ended_status(trial.last_result))

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        error = getattr(trial, "error_file", None)
        self._log(trial, "error", str(error) if error else None)

    def _print_status(self) -> None:
        from autopeft_ray.pareto import hypervolume

        records = read_records(self.folder)
        points = [
            (r["metrics"][SCORE], r["metrics"][PARAM_FRACTION])
            for r in records
            if r["status"] == "completed" and SCORE in r["metrics"]
        ]
        best = max((p[0] for p in points), default=float("nan"))
        hv = hypervolume(points, self.reference_point) if points else 0.0
        print(
            f"[autopeft-ray] trials ended: {len(records)} "
            f"(completed {len(points)}), best score {best:.4f}, hypervolume {hv:.4f}",
            flush=True,
        )


def completed_points(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of trials that reached their target fidelity and have both objectives."""
    return [
        r
        for r in records
        if r["status"] == "completed" and SCORE in r["metrics"] and PARAM_FRACTION in r["metrics"]
    ]


def pareto_records(done: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The completed records on the Pareto front, by increasing parameter fraction."""
    from autopeft_ray.pareto import pareto_mask

    if not done:
        return []
    mask = pareto_mask([(r["metrics"][SCORE], r["metrics"][PARAM_FRACTION]) for r in done])
    front = [r for r, keep in zip(done, mask, strict=True) if keep]
    return sorted(front, key=lambda r: r["metrics"][PARAM_FRACTION])


def write_tables(
    folder: str | Path, records: list[dict[str, Any]], pareto: list[dict[str, Any]]
) -> None:
    """``trials.csv``, ``pareto.json`` and ``pareto.csv``."""
    folder = Path(folder)
    _write_csv(folder / "trials.csv", records)
    (folder / "pareto.json").write_text(json.dumps(pareto, indent=2, default=float) + "\n")
    _write_csv(folder / "pareto.csv", pareto)


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
