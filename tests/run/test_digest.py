"""The keyed digest of a run folder's Tune state: a pickle changed or planted by anyone,
the folder's owner included, is refused by ``--resume`` (exit 2, naming the file)."""

from __future__ import annotations

import json
import logging
import pickle
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from autopeft_ray.cli import main
from autopeft_ray.config import SearchOptions, TrainingSettings
from autopeft_ray.exceptions import ConfigurationError, RunFolderError
from autopeft_ray.run import RunFolder
from autopeft_ray.run.digest import (
    DIGEST,
    KEY_VARIABLE,
    VERSIONS,
    StateDigest,
    check_digest,
    key_file,
    load_key,
    record_digest,
)

KEY = "a run-folder key of the tests"


@pytest.fixture
def keyed(monkeypatch, tmp_path):
    """The key from the environment, a config dir of the test's own."""
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def _finished(folder: Path) -> RunFolder:
    """A run folder as a search leaves it: options, Tune's state files, and its digest."""
    run = RunFolder(folder)
    run.write_options(SearchOptions(output=str(run.path), settings=_unloadable()))
    tune = run.tune_dir
    (tune / "trial_0").mkdir(parents=True)
    (tune / "tuner.pkl").write_bytes(pickle.dumps({"tuner": 1}))
    (tune / "experiment_state-2026.json").write_text('{"trial_data": []}')
    (tune / "searcher-state-2026.pkl").write_bytes(pickle.dumps({"searcher": 1}))
    (tune / "trial_0" / "result.json").write_text("{}")
    record_digest(run)
    return run


def _unloadable() -> TrainingSettings:
    # Were a check to pass, the resumed search would fail at once instead of running.
    return TrainingSettings(model="/nonexistent/model/folder")


class Planted:
    def __reduce__(self):
        return (print, ("planted code ran",))


def test_a_finished_folder_passes_and_each_change_is_named(keyed, tmp_path):
    run = _finished(tmp_path / "run")
    check_digest(run)
    digest = json.loads(run.file(DIGEST).read_text())
    assert sorted(digest["files"]) == [
        "experiment_state-2026.json",
        "searcher-state-2026.pkl",
        "tuner.pkl",
    ]
    assert KEY not in run.file(DIGEST).read_text() and digest["key_source"] == KEY_VARIABLE
    # Files Tune does not restore from are not covered: a trial's result, a CSV.
    (run.tune_dir / "trial_0" / "result.json").write_text('{"changed": 1}')
    (run.tune_dir / "progress.csv").write_text("a,b\n")
    check_digest(run)
    # Same owner, mode 644: the ownership check passes, the digest does not.
    state = run.tune_dir / "searcher-state-2026.pkl"
    state.write_bytes(pickle.dumps(Planted()))
    state.chmod(0o644)
    assert run.untrusted_entries() == []
    with pytest.raises(ConfigurationError) as caught:
        check_digest(run)
    message = str(caught.value)
    assert f"{state} changed since the search recorded its digest" in message
    assert "--trust-run-folder" in message and "\n" not in message
    state.write_bytes(pickle.dumps({"searcher": 1}))  # put back: passes again
    check_digest(run)
    newer = run.tune_dir / "experiment_state-2027.json"  # Tune restores the newest
    newer.write_text('{"trial_data": []}')
    with pytest.raises(ConfigurationError, match=f"{newer} was added since"):
        check_digest(run)


def test_another_key_a_damaged_digest_and_an_old_folder(keyed, tmp_path, monkeypatch, caplog):
    run = _finished(tmp_path / "run")
    monkeypatch.setenv(KEY_VARIABLE, "another key, as long as the first")
    with pytest.raises(ConfigurationError, match=f"recorded with another key than {KEY_VARIABLE}"):
        check_digest(run)
    # A forged digest without the key: refused as a change.
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    digest = json.loads(run.file(DIGEST).read_text())
    digest["files"]["tuner.pkl"] = ["0" * 64]
    run.file(DIGEST).write_text(json.dumps(digest))
    with pytest.raises(ConfigurationError, match="tuner.pkl changed since"):
        check_digest(run)
    run.file(DIGEST).write_text("{not json")
    with pytest.raises(RunFolderError, match=rf"{DIGEST} is damaged .*--trust-run-folder"):
        check_digest(run)
    # A folder of an older version has no digest: resumed as before, with a warning.
    run.file(DIGEST).unlink()
    with caplog.at_level(logging.WARNING):
        check_digest(run)
    assert f"has no {DIGEST}" in caplog.text
    # Trusted (or an old folder resumed): recording starts again with this key.
    record_digest(run)
    check_digest(run)


def test_the_key_file_is_made_once_with_mode_600_outside_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    path = key_file()
    assert path == tmp_path / "config" / "autopeft-ray" / "run-folder.key"
    key = load_key()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_key() == key and key.source == str(path)
    run = _finished(tmp_path / "run")
    check_digest(run)
    assert path.read_text().strip() not in run.file(DIGEST).read_text()
    monkeypatch.setenv(KEY_VARIABLE, "short")
    with pytest.raises(
        ConfigurationError, match=f"`{KEY_VARIABLE}` should be a secret of at least"
    ):
        load_key()


def test_the_callback_records_each_snapshot_and_keeps_earlier_versions(keyed, tmp_path):
    """Tune writes its state to the driver's staging folder, then copies it into tune/ in
    the background: a kill between the two leaves the old version there, still known."""
    run = _finished(tmp_path / "run")
    staging = tmp_path / "staging"
    staging.mkdir()
    trial = SimpleNamespace(storage=SimpleNamespace(experiment_driver_staging_path=str(staging)))
    callback = StateDigest(run)
    callback.setup()
    for version in range(VERSIONS + 1):
        (staging / "searcher-state-2026.pkl").write_bytes(pickle.dumps({"searcher": version}))
        callback.on_step_end(iteration=version, trials=[trial])
        if version == VERSIONS - 1:  # still copying: tune/ holds the one before
            (run.tune_dir / "searcher-state-2026.pkl").write_bytes(
                pickle.dumps({"searcher": version - 1})
            )
            check_digest(run)
    (run.tune_dir / "searcher-state-2026.pkl").write_bytes(pickle.dumps({"searcher": VERSIONS}))
    check_digest(run)
    (run.tune_dir / "searcher-state-2026.pkl").write_bytes(pickle.dumps({"searcher": 0}))
    with pytest.raises(ConfigurationError, match="changed since"):
        check_digest(run)  # too old: only the last VERSIONS are kept
    # Tune pickles its callbacks into tuner.pkl: the key and the digest stay out.
    pickled = pickle.dumps(callback)
    assert KEY.encode() not in pickled and pickle.loads(pickled)._digest is None


def test_resume_of_a_planted_folder_exits_2_in_one_line_before_ray(keyed, tmp_path, capsys):
    import ray

    run = _finished(tmp_path / "run")
    (run.tune_dir / "tuner.pkl").write_bytes(pickle.dumps(Planted()))
    was_running = ray.is_initialized()
    assert main(["search", "--output", str(run.path), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{run.tune_dir / 'tuner.pkl'} changed since" in err and "--trust-run-folder" in err
    assert ray.is_initialized() == was_running


@pytest.mark.slow
def test_a_real_search_records_its_state_and_resume_refuses_a_planted_pickle(
    ray_session, keyed, tmp_path, tiny_search_args, capsys
):
    """A tiny search: every file Tune restores from is in its digest when it ends; then a
    pickle changed by the folder's own user (mode 644) is refused by --resume."""
    output = tmp_path / "run"
    budget = ["--searcher", "random", "--initial", "2", "--model-based", "0", "--max-steps", "2"]
    assert main(["search", *tiny_search_args, *budget, "--output", str(output)]) == 0
    run = RunFolder(output)
    check_digest(run)
    digest = json.loads(run.file(DIGEST).read_text())["files"]
    names = sorted(p.name for p in run.tune_dir.iterdir() if p.suffix in (".json", ".pkl"))
    assert "tuner.pkl" in names and any(n.startswith("experiment_state") for n in names)
    assert sorted(digest) == names
    # Recorded at each snapshot while it ran (StateDigest), not only at the end.
    state_file = next(n for n in names if n.startswith("experiment_state"))
    assert len(digest[state_file]) > 1
    capsys.readouterr()
    state = next(run.tune_dir.glob("searcher-state-*.pkl"))
    state.write_bytes(pickle.dumps(Planted()))
    state.chmod(0o644)
    assert main(["search", "--output", str(output), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"{state} changed since" in err and "--trust-run-folder" in err
