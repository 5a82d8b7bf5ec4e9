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
* ``relevance.json``   which dimensions matter to the score (the SAAS GP's
  inverse lengthscales, :mod:`searchers.relevance`);
* ``ax_experiment.json`` the trials as an Ax experiment (``export-ax``);
* ``report/``          the report (``report.md`` and its figures);
* ``tune/``            Ray Tune's own experiment folder (``Tuner.restore``).

A trial's status is one of :data:`autopeft_ray.objectives.STATUSES`.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autopeft_ray.config import PRESET_KEY, TRIAL_SETTINGS_KEY, SearchOptions
from autopeft_ray.exceptions import RunFolderError, invalid_value, shorten
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

logger = logging.getLogger(__name__)

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
    "device",
    "precision",
    "gpu_memory_fraction",
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
    RELEVANCE = "relevance.json"
    AX_EXPERIMENT = "ax_experiment.json"
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
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError(f"a JSON {type(data).__name__}, not an object")
            return SearchOptions.from_dict(data)
        except (ValueError, TypeError, KeyError) as exc:
            raise RunFolderError(
                f"{path} is damaged ({type(exc).__name__}: {shorten(str(exc))}); it holds the "
                f"options of the search. Restore it from a copy, or start a new search in "
                f"another folder."
            ) from None

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
        """All trial records, the latest per trial id (a resumed trial ends once more).

        A last line cut short (a crash in the middle of an append) is skipped with
        a warning; :meth:`repair_records` removes it. Any other damaged line raises
        ``RunFolderError`` naming the file and the line.
        """
        return self._records()[0]

    def _records(self) -> tuple[list[dict[str, Any]], int | None]:
        """The records, and the byte offset of a cut-short last line (``None`` if none)."""
        path = self.file(self.TRIALS)
        if not path.exists():
            return [], None
        data = path.read_bytes()
        lines = data.split(b"\n")
        latest: dict[str, dict[str, Any]] = {}
        offset = 0
        for number, raw in enumerate(lines, start=1):
            start, offset = offset, offset + len(raw) + 1
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                trial_id, status = record["trial_id"], record["status"]
            except (ValueError, TypeError, KeyError) as exc:
                last = all(not rest.strip() for rest in lines[number:])
                if last and not data.endswith(b"\n"):
                    logger.warning(
                        "%s line %d is cut short (a crash while it was written): skipped. "
                        "`autopeft-ray search --resume` removes it.",
                        path,
                        number,
                    )
                    return list(latest.values()), start
                raise RunFolderError(
                    f"{path} line {number} is not a trial record ({type(exc).__name__}: "
                    f"{shorten(str(exc))}). Restore the file from a copy, or delete that line "
                    f"(its trial will count as never run)."
                ) from None
            record["status"] = _OLD_STATUSES.get(status, status)
            latest[trial_id] = record
        return list(latest.values()), None

    def repair_records(self) -> bool:
        """Remove a cut-short last line of ``trials.jsonl``; True if there was one."""
        cut = self._records()[1]
        if cut is None:
            return False
        with self.file(self.TRIALS).open("r+b") as f:
            f.truncate(cut)
        logger.warning("%s: removed the cut-short last line.", self.file(self.TRIALS))
        return True

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
        """The Pareto set: ``pareto.json``, or rebuilt from the trial records when it is missing."""
        path = self.file(self.PARETO)
        if path.exists():
            return list(json.loads(path.read_text()))
        records = self.read_records()
        if not records:
            self.check_exists()
            raise invalid_value(
                "run folder",
                str(self.path),
                expected=f"a search with ended trials (no {self.PARETO} and no {self.TRIALS})",
            )
        logger.warning("%s is missing: rebuilt from %s.", path, self.TRIALS)
        pareto = pareto_records(completed_points(records))
        self.write_tables(records, pareto)
        return pareto

    def check_writable(self, field: str = "output") -> None:
        """Raise unless the folder is one this user can create or write in (nothing is created)."""
        existing = self.path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise invalid_value(
                field,
                str(self.path),
                expected="a folder",
                fix=f"{existing} is a file: pick another path.",
            )
        if not os.access(existing, os.W_OK | os.X_OK):
            raise invalid_value(
                field,
                str(self.path),
                expected="a folder this user can write",
                fix=f"{existing} is not writable: pick another path or fix its permissions.",
            )

    def untrusted_entries(self, limit: int = 5) -> list[str]:
        """Entries Ray would unpickle on resume that another user could have planted.

        The run folder and everything under ``tune/`` must belong to this user
        and be writable by nobody else: ``Tuner.restore`` unpickles
        ``tune/tuner.pkl`` and the searcher state, so a run folder is code.
        """
        found: list[str] = []
        uid = os.getuid()
        candidates = [self.path]
        if self.tune_dir.exists():
            candidates += [self.tune_dir, *self.tune_dir.rglob("*")]
        for path in candidates:
            info = path.lstat()
            if info.st_uid != uid:
                found.append(f"{path} (owned by uid {info.st_uid})")
            elif info.st_mode & 0o022 and not path.is_symlink():
                found.append(f"{path} (writable by group or others)")
            if len(found) >= limit:
                break
        return found

    def check_exists(self) -> None:
        """Raise unless this is a run folder (it holds ``search.json`` or ``trials.jsonl``)."""
        if not (self.has_options() or self.file(self.TRIALS).exists()):
            what = "does not exist" if not self.path.exists() else "holds no search"
            raise invalid_value(
                "run folder",
                str(self.path),
                expected=f"a folder written by `autopeft-ray search` (this one {what})",
                fix="Check the path.",
            )

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

    def write_relevance(self, relevance: Mapping[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.file(self.RELEVANCE).write_text(json.dumps(relevance, indent=2) + "\n")

    def read_relevance(self) -> dict[str, Any] | None:
        """Which dimensions matter (``relevance.json``), or ``None`` if not fitted."""
        path = self.file(self.RELEVANCE)
        return dict(json.loads(path.read_text())) if path.exists() else None


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
