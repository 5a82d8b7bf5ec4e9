"""Which dimensions matter in a run folder, and the run as an Ax experiment (real Ax)."""

from __future__ import annotations

import random

import pytest

from autopeft_ray.cli import _print_front, main
from autopeft_ray.config import SearchOptions
from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.experiment.insight import export_ax, save_relevance
from autopeft_ray.run import RunFolder, trial_record
from autopeft_ray.space import SearchSpace
from autopeft_ray.testing.synthetic import SyntheticPeftProblem

#: The offline default model's space (MiniLM-L6: 6 layers, width 384).
SPACE = SearchSpace(num_layers=6, hidden_size=384)


def _run(tmp_path, completed: int, *, extra: bool = True) -> RunFolder:
    """A run folder of ``completed`` synthetic results, plus (``extra``) an early-stopped
    trial, a failed one and a configuration tried twice."""
    run = RunFolder(tmp_path / "run")
    run.write_options(SearchOptions(output=str(run.path), reference_point=(0.5, 0.05)))
    problem = SyntheticPeftProblem(SPACE, seed=0, relevant=("pa_size", "layer_5"), noise=0.002)
    rng = random.Random(0)
    configs = [SPACE.sample(rng) for _ in range(completed)]
    for i, config in enumerate(configs):
        result = problem.evaluate(config)
        run.append_record(trial_record(f"t{i:02d}", config.to_dict(), result, "completed"))
    if extra:
        stopped, failed = SPACE.sample(rng), SPACE.sample(rng)
        again = configs[0] if configs else SPACE.sample(rng)
        for trial_id, config, status in (
            ("stopped", stopped, "early_stopped"),
            ("failed", failed, "failed"),
            ("again", again, "early_stopped"),
        ):
            result = None if status == "failed" else problem.evaluate(config, fidelity=10)
            run.append_record(trial_record(trial_id, config.to_dict(), result, status, error="OOM"))
    return run


def test_export_ax_loads_in_ax_with_every_trial(tmp_path):
    from ax.analysis import Summary
    from ax.api.client import Client

    run = _run(tmp_path, 8)
    path = export_ax(run.path)
    assert path == run.path / "ax_experiment.json"
    client = Client.load_from_json_file(str(path))
    # One of Ax's own analyses on it: the summary of every trial.
    (card,) = client.compute_analyses([Summary()], display=False)
    table = card.df.set_index("trial_index")
    records = run.read_records()
    assert len(table) == len(records) == 11
    assert list(table["arm_name"]) == [*(f"t{i:02d}" for i in range(8)), "stopped", "failed", "t00"]
    statuses = list(table["trial_status"])
    assert statuses == ["COMPLETED"] * 8 + ["EARLY_STOPPED", "FAILED", "EARLY_STOPPED"]
    for index, record in enumerate(records):
        row = table.loc[index]
        for name in [d.name for d in SPACE.dimensions]:
            assert row[name] == record["configuration"][name]
        if record["status"] != "failed":
            assert row["score"] == pytest.approx(record["metrics"]["score"])
            assert row["param_fraction"] == pytest.approx(record["metrics"]["param_fraction"])
    # Thresholds at the search's reference point, so Ax's front matches ours.
    optimization = client._experiment.optimization_config  # noqa: SLF001
    thresholds = optimization.objective_thresholds
    assert [(t.metric_names, t.bound) for t in thresholds] == [
        (["score"], 0.5),
        (["param_fraction"], 0.05),
    ]
    # Going on in Ax continues model-based: the exported trials are its initial design
    # (Ax's default strategy starts at the centre point and then one Sobol trial).
    (index,) = client.get_next_trials(max_trials=1)
    generator_run = client._experiment.trials[index].generator_runs[0]  # noqa: SLF001
    assert generator_run._generation_node_name == "MBM"  # noqa: SLF001


def test_export_ax_from_the_cli_to_a_chosen_file(tmp_path, capsys):
    run = _run(tmp_path, 3, extra=False)
    out = tmp_path / "elsewhere" / "experiment.json"
    assert main(["export-ax", str(run.path), "--output", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert "load_from_json_file" in capsys.readouterr().out


@pytest.mark.parametrize("completed", [0, 1])
def test_too_few_completed_trials_give_a_clear_message(tmp_path, capsys, completed):
    run = _run(tmp_path, completed)
    with pytest.raises(ConfigurationError, match=f"has {completed} completed trial.*at least 2"):
        export_ax(run.path)
    assert main(["export-ax", str(run.path)]) == 2
    assert "needs at least 2" in capsys.readouterr().err
    assert save_relevance(run, SPACE) is None and run.read_relevance() is None

    assert main(["report", str(run.path)]) == 0
    report = (run.report_dir / "report.md").read_text()
    assert (
        f"Not fitted: it needs at least 2 completed trials, and this run has {completed}." in report
    )
    assert not (run.report_dir / "relevance.png").exists()


def test_report_refits_which_dimensions_matter(tmp_path, capsys):
    run = _run(tmp_path, 30)
    assert run.read_relevance() is None  # as after a random search, or an older run
    assert main(["report", str(run.path)]) == 0
    relevance = run.read_relevance()
    assert relevance["source"] == "saas-map refit" and relevance["n_observations"] == 30
    top = [row["name"] for row in relevance["dimensions"][:2]]
    assert set(top) == {"pa_size", "layer_5"}, relevance
    report = (run.report_dir / "report.md").read_text()
    assert "## Which dimensions matter" in report and "| layer_5 |" in report
    assert (run.report_dir / "relevance.png").stat().st_size > 1000
    # The end-of-search summary names the top ones.
    _print_front(run.path)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("Dimensions"))
    assert line.startswith("Dimensions that matter most (SAAS GP relevance): ")
    assert {part.split(" (")[0] for part in line.split(": ")[1].split(", ")[:2]} == set(top)


def test_export_ax_of_a_missing_folder_exits_2(tmp_path, capsys):
    assert main(["export-ax", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_failing_relevance_fit_does_not_fail_the_run(tmp_path, monkeypatch, caplog):
    import autopeft_ray.searchers as searchers

    def fail(*args, **kwargs):
        raise RuntimeError("Cholesky failed")  # as a numerically singular fit would

    monkeypatch.setattr(searchers, "fit_relevance", fail)
    run = _run(tmp_path, 4)
    assert save_relevance(run, SPACE) is None and run.read_relevance() is None
    assert "fitting which dimensions matter failed" in caplog.text
