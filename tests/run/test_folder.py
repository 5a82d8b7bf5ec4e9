"""``RunFolder``: every path of a run folder, its records, tables and options."""

from __future__ import annotations

import csv
import json

import pytest

from autopeft_ray.config import SearchOptions, TrainingSettings
from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.objectives import COMPLETED, EARLY_STOPPED, FAILED, STATUSES
from autopeft_ray.run import (
    RunFolder,
    completed_points,
    ended_status,
    objective_point,
    pareto_records,
    trial_record,
)


def _record(trial_id: str, score: float, fraction: float, status: str = COMPLETED) -> dict:
    config = {"sa_size": 8, "pa_size": 0, "pt_length": 0, "layer_0": 1, "trial_settings": {}}
    result = {"score": score, "param_fraction": fraction, "fidelity": 4, "noise": 1.0}
    return trial_record(trial_id, config, result, status)


def test_records_keep_the_configuration_and_the_metrics_that_matter():
    record = _record("a", 0.8, 0.01)
    assert "trial_settings" not in record["configuration"]
    assert record["metrics"] == {"score": 0.8, "param_fraction": 0.01, "fidelity": 4}
    assert objective_point(record) == (0.8, 0.01)
    where = {"device": "cuda", "precision": "bf16", "gpu_memory_fraction": 0.5}
    config = {"sa_size": 8, "pa_size": 0, "pt_length": 0, "layer_0": 1}
    on_gpu = trial_record("g", config, {"score": 0.8, **where}, COMPLETED)
    assert where.items() <= on_gpu["metrics"].items(), "the record says where the trial ran"


def test_appended_records_are_read_back_the_latest_per_trial(tmp_path):
    run = RunFolder(tmp_path / "run")
    assert run.read_records() == []
    run.append_record(_record("a", 0.7, 0.01, EARLY_STOPPED))
    run.append_record(_record("b", 0.6, 0.001))
    run.append_record(_record("a", 0.8, 0.01))  # resumed, ended again
    records = run.read_records()
    assert [(r["trial_id"], r["status"]) for r in records] == [("a", COMPLETED), ("b", COMPLETED)]
    assert [r["trial_id"] for r in run.completed()] == ["b", "a"]  # in the order they ended


def test_statuses_of_earlier_versions_read_as_todays(tmp_path):
    run = RunFolder(tmp_path)
    for trial_id, old in (("a", "stopped_early"), ("b", "error"), ("c", "completed")):
        run.append_record({**_record(trial_id, 0.5, 0.1), "status": old})
    assert [r["status"] for r in run.read_records()] == [EARLY_STOPPED, FAILED, COMPLETED]
    assert {r["status"] for r in run.read_records()} <= set(STATUSES)


def test_pareto_tables_and_csv(tmp_path):
    run = RunFolder(tmp_path)
    records = [_record("a", 0.8, 0.01), _record("b", 0.7, 0.02), _record("c", 0.6, 0.001)]
    records.append(_record("d", 0.9, 0.5, FAILED))
    front = pareto_records(completed_points(records))
    assert [r["trial_id"] for r in front] == ["c", "a"]  # b is dominated by a
    run.write_tables(records, front)
    assert [r["trial_id"] for r in run.read_pareto()] == ["c", "a"]
    with run.file(RunFolder.TRIALS_CSV).open() as f:
        rows = list(csv.DictReader(f))
    assert [row["trial_id"] for row in rows] == ["a", "b", "c", "d"]
    assert rows[0]["sa_size"] == "8" and rows[0]["score"] == "0.8"


def test_options_round_trip_and_a_missing_folder_is_named(tmp_path):
    run = RunFolder(tmp_path / "run")
    with pytest.raises(ConfigurationError, match="`run folder` should be a folder written by"):
        run.read_options()
    with pytest.raises(ConfigurationError, match="this one does not exist"):
        run.read_pareto()
    options = SearchOptions(
        settings=TrainingSettings(task="pang_lee_polarity", max_steps=3),
        reference_point=(0.5, 0.02),
        baselines=("lora",),
    )
    run.write_options(options)
    assert run.has_options() and run.read_options() == options
    raw = json.loads(run.file(RunFolder.OPTIONS).read_text())
    assert raw["settings"]["task"] == "pang_lee_polarity"


def test_baselines_are_optional(tmp_path):
    run = RunFolder(tmp_path)
    assert not run.has_baselines() and run.read_baselines() == []
    run.write_baselines([{"name": "lora", "metrics": {}}])
    assert run.read_baselines() == [{"name": "lora", "metrics": {}}]


def test_ended_status():
    assert ended_status({"fidelity": 10, "target_fidelity": 10}) == COMPLETED
    assert ended_status({"fidelity": 3, "target_fidelity": 10}) == EARLY_STOPPED
    assert ended_status(None) == COMPLETED  # nothing reported: no budget to fall short of


# -- damage --------------------------------------------------------------------------


def test_a_cut_short_last_line_is_skipped_with_a_warning_and_repaired(tmp_path, caplog):
    run = RunFolder(tmp_path)
    run.append_record(_record("a", 0.7, 0.01))
    run.append_record(_record("b", 0.6, 0.001))
    path = run.file(RunFolder.TRIALS)
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"trial_id": "c", "status": "comp')  # a crash mid-append
    assert [r["trial_id"] for r in run.read_records()] == ["a", "b"]
    assert f"{path} line 3 is cut short" in caplog.text
    assert run.repair_records() and path.read_bytes() == whole
    assert not run.repair_records()


@pytest.mark.parametrize("damage", [b"not json\n", b'{"no": "trial id"}\n', b"[1, 2]\n"])
def test_any_other_damaged_line_names_the_file_and_the_line(tmp_path, damage):
    from autopeft_ray.exceptions import RunFolderError

    run = RunFolder(tmp_path)
    run.append_record(_record("a", 0.7, 0.01))
    with run.file(RunFolder.TRIALS).open("ab") as f:
        f.write(damage)
    run.append_record(_record("b", 0.6, 0.001))
    with pytest.raises(RunFolderError, match=rf"{run.file(RunFolder.TRIALS)} line 2 is not"):
        run.read_records()


@pytest.mark.parametrize("text", ["garbage", "[]", '{"searcher": "nope"}', '{"nuts": 3}'])
def test_a_damaged_options_file_names_itself(tmp_path, text):
    from autopeft_ray.exceptions import RunFolderError

    run = RunFolder(tmp_path)
    run.file(RunFolder.OPTIONS).write_text(text)
    with pytest.raises(RunFolderError, match=rf"{run.file(RunFolder.OPTIONS)} is damaged"):
        run.read_options()


def test_a_missing_pareto_file_is_rebuilt_from_the_records(tmp_path, caplog):
    run = RunFolder(tmp_path)
    for record in (_record("a", 0.8, 0.01), _record("b", 0.7, 0.02)):
        run.append_record(record)
    assert [r["trial_id"] for r in run.read_pareto()] == ["a"]
    assert "pareto.json is missing: rebuilt" in caplog.text
    assert run.file(RunFolder.PARETO).exists()


def test_output_checks_create_nothing(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for path in (a_file, a_file / "below"):
        with pytest.raises(ConfigurationError, match=r"`output` should be a folder.*is a file"):
            RunFolder(path).check_writable()
    RunFolder(tmp_path / "new" / "run").check_writable()
    assert not (tmp_path / "new").exists()


def test_folders_others_can_write_are_not_trusted(tmp_path):
    run = RunFolder(tmp_path / "run")
    (run.tune_dir / "trial").mkdir(parents=True)
    run.path.chmod(0o755)
    (run.tune_dir / "tuner.pkl").write_bytes(b"")
    (run.tune_dir / "tuner.pkl").chmod(0o644)
    assert run.untrusted_entries() == []
    (run.tune_dir / "tuner.pkl").chmod(0o666)
    assert run.untrusted_entries() == [
        f"{run.tune_dir / 'tuner.pkl'} (writable by group or others)"
    ]
    (run.tune_dir / "tuner.pkl").chmod(0o644)
    run.tune_dir.chmod(0o777)  # anyone could plant a tuner.pkl in it
    assert run.untrusted_entries() == [f"{run.tune_dir} (writable by group or others)"]


def test_records_missing_from_the_folder_are_rebuilt_from_tunes_saved_state(tmp_path, caplog):
    """A record cut short or deleted is rebuilt from the trial's state in Tune; trials
    that did not end (running, pending) are left to Tune."""
    from types import SimpleNamespace

    run = RunFolder(tmp_path / "run")
    config = {"sa_size": 8, "pa_size": 0, "pt_length": 0, "layer_0": 1, "layer_1": 1}
    done = {"score": 0.7, "param_fraction": 0.01, "fidelity": 2, "target_fidelity": 2}
    run.append_record(trial_record("a", config, done, COMPLETED))

    def trial(trial_id, status, result):
        settings = {"trial_settings": {"seed": 0}}  # never kept in a record
        return SimpleNamespace(
            trial_id=trial_id, status=status, last_result=result, config={**config, **settings}
        )

    stopped = {**done, "fidelity": 1, "score": 0.6, "timestamp": 1_700_000_000}
    trials = [
        trial("a", "TERMINATED", done),
        trial("b", "TERMINATED", done),
        trial("c", "TERMINATED", stopped),
        trial("d", "ERROR", {}),
        trial("e", "RUNNING", done),
        trial("f", "PENDING", {}),
    ]
    with caplog.at_level("WARNING"):
        rebuilt = run.rebuild_records(trials)
    assert [r["trial_id"] for r in rebuilt] == ["b", "c", "d"]
    assert "rebuilt the record of 3 ended trial(s)" in caplog.text
    latest = {r["trial_id"]: r for r in run.read_records()}
    assert sorted(latest) == ["a", "b", "c", "d"]
    assert latest["b"]["metrics"] == latest["a"]["metrics"] and latest["b"]["status"] == COMPLETED
    assert latest["c"]["status"] == EARLY_STOPPED and latest["c"]["finished_at"] == 1_700_000_000
    assert latest["d"]["status"] == FAILED and "trial_settings" not in latest["b"]["configuration"]
    assert run.rebuild_records(trials) == []  # nothing more to rebuild
