"""``autopeft-ray search --resume`` after Ctrl-C and after the driver (and Ray) is killed.

Each test runs the real CLI in its own process session on a tiny real search,
interrupts it once ``trials.jsonl`` holds a trial (the first test twice: Ctrl-C,
then a kill), resumes it to the end and checks that nothing measured was lost,
no configuration was trained twice, and the budget was met exactly.

What resuming means (Ray Tune 2.60 ``Tuner.restore``): a trial that was pending
or running at the interruption continues under its trial id from its last
checkpoint (with one evaluation per trial, that is from step 0), so it counts
once. A trial that had ended is not trained again: Tune's saved state holds its
final checkpoint and result, so when the driver was killed after its final
report the resumed run ends it at once with the same metrics and
``trials.jsonl`` gets a second, identical line for it (``read_records`` keeps
the latest line per trial id).

Every Ray process of these runs names its temp folder (``RAY_TMPDIR``) on its
command line, so a test can assert that none outlives a run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autopeft_ray.space import PeftConfiguration

CLI = str(Path(sys.executable).with_name("autopeft-ray"))
BUDGET = 3
SEARCHERS = {
    "random": ["--searcher", "random", "--initial", str(BUDGET), "--model-based", "0"],
    "autopeft": [
        "--searcher",
        "autopeft",
        "--initial",
        "2",
        "--model-based",
        str(BUDGET - 2),
        "--nuts",
        "8",
        "5",
        "1",
    ],
}


def _ray_processes(marker: str) -> list[int]:
    """Live processes whose command line names ``marker`` (this run's Ray temp folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


class Runs:
    """Starts CLI runs in their own sessions and cleans up after them."""

    def __init__(self, ray_tmp: str, log_dir: Path) -> None:
        self.ray_tmp = ray_tmp
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            "RAY_TMPDIR": ray_tmp,  # every Ray process names it: the leak check below
            "RAY_ADDRESS": "local",  # never join a cluster another job started here
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            "TOKENIZERS_PARALLELISM": "false",
        }

    def start(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [CLI, *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,  # its own process group, as in a terminal
        )
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def leaked(self) -> list[int]:
        return _ray_processes(self.ray_tmp)

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for pid in self.leaked():
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def runs(tmp_path: Path, tmp_cache: str) -> Iterator[Runs]:
    # Ray's socket paths must stay under 107 characters: a short folder in /tmp.
    ray_tmp = tempfile.mkdtemp(prefix="apr-resume-", dir="/tmp")
    runs = Runs(ray_tmp, tmp_path)
    try:
        yield runs
    finally:
        runs.cleanup()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _records(output: Path) -> list[dict]:
    path = output / "trials.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _canonical(record: dict) -> PeftConfiguration:
    return PeftConfiguration.from_dict(record["configuration"]).model_key()


def _wait_gone(runs: Runs, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while runs.leaked() and time.monotonic() < deadline:
        time.sleep(0.5)
    return runs.leaked()


def _wait_for_trials(output: Path, proc: subprocess.Popen[bytes], count: int) -> None:
    """Until ``count`` distinct trials have records (a resumed trial may add a line)."""
    deadline = time.monotonic() + 300
    while len({r["trial_id"] for r in _records(output)}) < count:
        assert proc.poll() is None, f"the search ended (exit {proc.returncode}) too early"
        assert time.monotonic() < deadline, f"fewer than {count} trials ended within 300 s"
        time.sleep(0.2)


def _stopped_cleanly(runs: Runs, output: Path, budget: int) -> list[dict]:
    assert not _wait_gone(runs), "Ray processes outlived the interrupted search"
    before = _records(output)
    assert before, "the trials that ended before the interruption are on disk"
    assert len({r["trial_id"] for r in before}) < budget
    return before


def _nothing_lost_or_repeated(before: list[dict], lines: list[dict]) -> dict[str, dict]:
    assert lines[: len(before)] == before, "trials.jsonl is only appended to"
    latest = {r["trial_id"]: r for r in lines}
    for record in before:
        if record["status"] == "completed":
            assert latest[record["trial_id"]]["metrics"] == record["metrics"], (
                "a finished trial was trained again"
            )
    return latest


@pytest.mark.slow
@pytest.mark.long(
    reason="five CLI processes (a search, its refused and moved resumes, a SIGKILL, a "
    "rebuild): what a user's process does on Ctrl-C and on a crash, Ray included"
)
def test_resume_after_ctrl_c_and_after_a_kill_loses_nothing_and_repeats_nothing(
    runs: Runs, tmp_path: Path, tiny_search_args: list[str]
) -> None:
    """One model-based search interrupted twice, each time resumed: Ctrl-C after its
    first trial ended (Tune saves its state and returns), then a SIGKILL of the whole
    process group, Ray included, after its second (a crash); resumed to the end. Then
    records lost after the end are rebuilt by one more --resume."""
    output = tmp_path / "run"
    budget = ["--max-steps", "2", "--concurrency", "1", *SEARCHERS["autopeft"]]
    first = runs.start(["search", *tiny_search_args, *budget, "--output", str(output)], "first")
    _wait_for_trials(output, first, 1)
    assert runs.leaked(), "the leak check sees this run's Ray processes"
    os.killpg(first.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    # Tune saves its state and returns; the CLI must not pass that off as a finished search.
    assert first.wait(timeout=180) == 2, runs.log("first")
    assert f"--output {output} --resume" in runs.log("first")
    assert (output / "pareto.json").exists(), "what ended is summarised"
    before = _stopped_cleanly(runs, output, BUDGET)

    # A moved run folder is refused, before Ray starts, naming both places.
    moved = tmp_path / "moved"
    shutil.move(output, moved)
    refused = runs.start(["search", "--output", str(moved), "--resume"], "refused")
    assert refused.wait(timeout=120) == 2, runs.log("refused")
    assert f"move it back to {output}" in runs.log("refused")
    assert "Traceback" not in runs.log("refused") and not runs.leaked()
    shutil.move(moved, output)

    second = runs.start(["search", "--output", str(output), "--resume"], "second")
    _wait_for_trials(output, second, len({r["trial_id"] for r in before}) + 1)
    os.killpg(second.pid, signal.SIGKILL)  # a crash of the whole process group
    assert second.wait() == -signal.SIGKILL
    _nothing_lost_or_repeated(before, _records(output))
    before = _stopped_cleanly(runs, output, BUDGET)

    resumed = runs.start(["search", "--output", str(output), "--resume"], "resumed")
    assert resumed.wait(timeout=600) == 0, runs.log("resumed")
    assert not _wait_gone(runs), "Ray processes outlived the resumed search"
    lines = _records(output)
    latest = _nothing_lost_or_repeated(before, lines)
    assert len(latest) == BUDGET, (len(latest), runs.log("resumed"))
    assert all(r["status"] == "completed" for r in latest.values())
    trial_ids: dict[PeftConfiguration, set[str]] = {}
    for record in lines:
        trial_ids.setdefault(_canonical(record), set()).add(record["trial_id"])
    assert len(trial_ids) == BUDGET, "a configuration was evaluated twice"
    assert all(len(ids) == 1 for ids in trial_ids.values())
    pareto = json.loads((output / "pareto.json").read_text())
    assert pareto and {json.dumps(r["configuration"], sort_keys=True) for r in pareto} <= {
        json.dumps(r["configuration"], sort_keys=True) for r in latest.values()
    }

    # Records lost after the search ended (a line cut short by a crash, a damaged line
    # deleted as the error message allows) are rebuilt from Tune's state on --resume.
    trials = output / "trials.jsonl"
    kept = trials.read_text().splitlines()
    lost = [json.loads(kept[0])["trial_id"], json.loads(kept[-1])["trial_id"]]
    trials.write_text("\n".join(kept[1:-1]) + "\n" + kept[-1][: len(kept[-1]) // 2])
    again = runs.start(["search", "--output", str(output), "--resume"], "rebuilt")
    assert again.wait(timeout=600) == 0, runs.log("rebuilt")
    assert "rebuilt the record of" in runs.log("rebuilt")
    rebuilt = {r["trial_id"]: r for r in _records(output)}
    assert sorted(rebuilt) == sorted(latest) and all(t in rebuilt for t in lost)
    for trial_id, record in latest.items():
        assert rebuilt[trial_id]["metrics"]["score"] == record["metrics"]["score"]
    front = json.loads((output / "pareto.json").read_text())
    assert [(r["trial_id"], r["metrics"]) for r in front] == [
        (r["trial_id"], r["metrics"]) for r in pareto
    ]
    assert not _wait_gone(runs)


@pytest.mark.slow
@pytest.mark.long(
    reason="four CLI processes against a real S3 API (a killed search, its resume from "
    "the URI alone, report and evaluate on the URI)"
)
def test_a_search_in_object_storage_resumes_from_its_uri(
    runs: Runs, tmp_path: Path, tiny_search_args: list[str]
) -> None:
    """The run folder lives on a real S3 API (moto's server, loopback): the driver is
    killed after a trial ended, resumed from the URI alone, and nothing measured is lost
    and no configuration is proposed twice; ``report`` and ``evaluate`` read the URI too.
    Unlike a local folder, a trial that ended just before the kill may be trained again
    (see below)."""
    from autopeft_ray.run import RunFolder
    from autopeft_ray.testing.object_store import FAKE_CREDENTIALS, moto_s3

    with moto_s3() as s3:
        runs.env.update(FAKE_CREDENTIALS)
        uri = s3.uri("team/run")
        budget = ["--max-steps", "2", "--concurrency", "1", *SEARCHERS["random"]]
        first = runs.start(["search", *tiny_search_args, *budget, "--output", uri], "first")
        deadline = time.monotonic() + 300
        while not s3.keys("team/run/trials/"):
            assert first.poll() is None, runs.log("first")
            assert time.monotonic() < deadline, "no trial ended within 300 s"
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGKILL)
        assert first.wait() == -signal.SIGKILL
        assert not _wait_gone(runs), "Ray processes outlived the killed search"
        before = RunFolder(uri).read_records()
        assert 1 <= len(before) < BUDGET

        resumed = runs.start(["search", "--output", uri, "--resume"], "resumed")
        assert resumed.wait(timeout=600) == 0, runs.log("resumed")
        latest = {r["trial_id"]: r for r in RunFolder(uri).read_records()}
        assert len(latest) == BUDGET and all(r["status"] == "completed" for r in latest.values())
        # Ray uploads Tune's experiment state to object storage in the background: a
        # trial that ended within the last upload before the kill may run once more on
        # resume, under its own trial id, and measure the same (seeded training). Its
        # first record is kept; no other trial and no other configuration is added.
        for record in before:
            again = latest[record["trial_id"]]["metrics"]
            for key in ("score", "param_fraction", "fidelity"):
                assert again[key] == record["metrics"][key], (key, again, record["metrics"])
        assert len({_canonical(r) for r in latest.values()}) == BUDGET, "a configuration twice"
        keys = set(s3.keys("team/run/"))
        assert {"team/run/pareto.json", "team/run/report/report.md"} <= keys
        assert any(k.startswith("team/run/tune/") and k.endswith("tuner.pkl") for k in keys)

        report = runs.start(["report", uri, "--report-dir", str(tmp_path / "report")], "report")
        assert report.wait(timeout=300) == 0, runs.log("report")
        assert (tmp_path / "report" / "report.md").exists()
        smallest = min(r["metrics"]["param_fraction"] for r in latest.values())
        argv = ["evaluate", uri, "--seeds", "0", "--max-fraction", str(smallest)]
        evaluate = runs.start([*argv, *tiny_search_args[-2:]], "evaluate")
        assert evaluate.wait(timeout=600) == 0, runs.log("evaluate")
        summary = json.loads(s3.read("team/run/evaluate/evaluation.json"))
        assert len(summary) == 1 and "test_score" in summary[0]["metrics"], summary
        assert not _wait_gone(runs), "Ray processes outlived the runs"
