"""``RunLog``: the trial records it appends and the metrics it exports."""

from __future__ import annotations

import re
import socket
import time
import urllib.request
from types import SimpleNamespace

import pytest

from autopeft_ray.objectives.pareto import hypervolume
from autopeft_ray.run import RunFolder, RunLog, ended_status, trial_record
from autopeft_ray.run.metrics import (
    BEST_SCORE_METRIC,
    HYPERVOLUME_METRIC,
    MAX_TAG_LENGTH,
    SUGGESTION_BUCKETS,
    SUGGESTION_SECONDS_METRIC,
    TRIALS_FINISHED_METRIC,
    run_tag,
)

REFERENCE = (0.0, 0.05)


def _trial(trial_id: str, score: float, fraction: float, fidelity: int = 10) -> SimpleNamespace:
    result = {"score": score, "param_fraction": fraction, "fidelity": fidelity}
    result["target_fidelity"] = 10
    return SimpleNamespace(trial_id=trial_id, config={}, last_result=result)


def test_run_log_follows_the_front_best_score_and_suggestion_times(tmp_path, capsys):
    # One trial of an earlier (resumed) run is already in trials.jsonl.
    run = RunFolder(tmp_path)
    run.append_record(trial_record("t0", {}, _trial("t0", 0.6, 0.001).last_result, "completed"))
    searcher = SimpleNamespace(timings=[{"total_s": 99.0}])  # restored: exported by its driver
    callback = RunLog(tmp_path, REFERENCE, searcher)
    callback.setup()
    assert callback.hypervolume == pytest.approx(hypervolume([(0.6, 0.001)], REFERENCE))

    searcher.timings += [{"total_s": 1.5}, {"n_observations": 3, "fallback": "error"}]
    callback.on_step_end(iteration=1, trials=[])
    assert callback.suggestion_seconds == [1.5], "untimed fallbacks are skipped"
    for trial in (_trial("t1", 0.8, 0.01), _trial("t2", 0.7, 0.02), _trial("t3", 0.9, 0.03, 5)):
        callback.on_trial_complete(iteration=2, trials=[], trial=trial)
    callback.on_trial_error(iteration=3, trials=[], trial=_trial("t4", 0.0, 0.0))

    # t2 is dominated by t1; t3 stopped early (fidelity 5 of 10): neither is on the front.
    assert callback.hypervolume == pytest.approx(
        hypervolume([(0.6, 0.001), (0.8, 0.01)], REFERENCE)
    )
    assert callback.best_score == 0.8
    assert callback.finished == {"completed": 2, "early_stopped": 1, "failed": 1}
    assert [m.payload for m in callback.front.members] == ["t0", "t1"]
    # Each ended trial is in trials.jsonl, with the same status vocabulary.
    statuses = {r["trial_id"]: r["status"] for r in run.read_records()}
    assert statuses == {
        "t0": "completed",
        "t1": "completed",
        "t2": "completed",
        "t3": "early_stopped",
        "t4": "failed",
    }
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == (
        f"[autopeft-ray] trials ended: 5 (completed 3), best score 0.8000, "
        f"hypervolume {callback.hypervolume:.4f}"
    )


def test_run_log_pickles_without_its_metric_handles(tmp_path):
    import pickle

    callback = RunLog(tmp_path, REFERENCE)
    callback.setup()
    restored = pickle.loads(pickle.dumps(callback))
    assert restored._metrics is None and restored.reference_point == REFERENCE


def test_ended_status():
    assert ended_status({"fidelity": 10, "target_fidelity": 10}) == "completed"
    assert ended_status({"fidelity": 3, "target_fidelity": 10}) == "early_stopped"


# -- exported through Ray's metrics agent ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def metrics_port():
    """The metrics endpoint of the driver's node: a Ray started here with a known
    export port and a short report interval, or the session's Ray if one runs."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            _metrics_export_port=_free_port(),
            _system_config={"metrics_report_interval_ms": 2000},
        )
    node_id = ray.get_runtime_context().get_node_id()
    (node,) = [n for n in ray.nodes() if n["NodeID"] == node_id]
    yield node["MetricsExportPort"]
    if started:
        ray.shutdown()


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def _scrape(port: int, run: str) -> dict[tuple[str, str], float]:
    """``{(name, label "status" or "le" or ""): value}`` of the run's autopeft samples."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or "autopeft" not in match["name"]:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"]))
        if labels.get("run") == run:
            key = labels.get("status") or labels.get("le") or ""
            samples[match["name"], key] = float(match["value"])
    return samples


def _wait_for(port: int, run: str, expected: dict, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        samples = _scrape(port, run)
        if all(samples.get(k) == pytest.approx(v) for k, v in expected.items()):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout} s: {samples}, expected {expected}")
        time.sleep(2)


@pytest.mark.slow
def test_callback_exports_prometheus_metrics(metrics_port, tmp_path):
    """The callback on a real Ray runtime, its values read back from the metrics endpoint.
    The run folder's name is not ASCII: Ray's metrics take ASCII tags only."""
    run = tmp_path / "driven ünï✓"
    searcher = SimpleNamespace(timings=[])
    callback = RunLog(run, REFERENCE, searcher)
    callback.setup()
    searcher.timings += [{"total_s": 0.7}, {"total_s": 7.0}]
    for trial in (_trial("a", 0.8, 0.01), _trial("b", 0.7, 0.001), _trial("c", 0.9, 0.02, 5)):
        callback.on_trial_complete(iteration=1, trials=[], trial=trial)
    callback.on_trial_error(iteration=2, trials=[], trial=_trial("d", 0.0, 0.0))

    expected = {
        (f"ray_{TRIALS_FINISHED_METRIC}_total", "completed"): 2,
        (f"ray_{TRIALS_FINISHED_METRIC}_total", "early_stopped"): 1,
        (f"ray_{TRIALS_FINISHED_METRIC}_total", "failed"): 1,
        (f"ray_{HYPERVOLUME_METRIC}", ""): hypervolume([(0.8, 0.01), (0.7, 0.001)], REFERENCE),
        (f"ray_{BEST_SCORE_METRIC}", ""): 0.8,
        (f"ray_{SUGGESTION_SECONDS_METRIC}_count", ""): 2,
        (f"ray_{SUGGESTION_SECONDS_METRIC}_bucket", "1.0"): 1,  # 0.7 s
        (f"ray_{SUGGESTION_SECONDS_METRIC}_bucket", "10.0"): 2,  # and 7 s
    }
    samples = _wait_for(metrics_port, run_tag(str(run)), expected)
    assert len([k for k in samples if k[0].endswith("_bucket")]) == len(SUGGESTION_BUCKETS) + 1


@pytest.mark.slow
@pytest.mark.long(
    reason="a real model-based search (3 trials, NUTS) whose dashboard metrics are read "
    "back from Ray's metrics endpoint"
)
def test_a_real_search_exports_its_metrics(metrics_port, tmp_path):
    from autopeft_ray.config import SearchOptions, TrainingSettings
    from autopeft_ray.experiment import run_search
    from autopeft_ray.run import objective_point, reference_point_of

    settings = TrainingSettings(
        task="pang_lee_polarity", max_length=32, batch_size=8, max_eval_examples=16, max_steps=2
    )
    options = SearchOptions(
        settings=settings,
        output=str(tmp_path / "search"),
        num_initial=2,
        num_model_based=1,
        nuts=(8, 5, 1),
        concurrency=2,
        cpus_per_trial=1,
    )
    output = run_search(options)

    run = RunFolder(output)
    done = run.completed()
    assert len(done) == 3
    reference = reference_point_of(run)
    points = [objective_point(r) for r in done]
    expected = {
        (f"ray_{TRIALS_FINISHED_METRIC}_total", "completed"): 3,
        (f"ray_{HYPERVOLUME_METRIC}", ""): hypervolume(points, reference),
        (f"ray_{BEST_SCORE_METRIC}", ""): max(p[0] for p in points),
        (f"ray_{SUGGESTION_SECONDS_METRIC}_count", ""): 1,  # the one model-based suggestion
    }
    _wait_for(metrics_port, str(output), expected)


@pytest.mark.parametrize(
    "run", ["runs/my run ünï✓", "r" * 5000, "runs/tab\there", "s3://bucket/ünï?region=x"]
)
def test_run_tags_are_short_printable_ascii_and_tell_runs_apart(run):
    tag = run_tag(run)
    assert tag.isascii() and tag.isprintable() and len(tag) <= MAX_TAG_LENGTH
    assert run_tag(run + "2") != tag
    assert run_tag("runs/plain") == "runs/plain"
