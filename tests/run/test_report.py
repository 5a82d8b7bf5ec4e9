"""The report of a run folder: figures, tables, baselines, best under a budget."""

from __future__ import annotations

import pytest

from autopeft_ray.config import SearchOptions
from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.objectives.pareto import DEFAULT_REFERENCE_POINT
from autopeft_ray.run import (
    RunFolder,
    baselines_table,
    best_under,
    markdown_table,
    reference_point_of,
    trial_record,
    write_report,
)
from autopeft_ray.run.records import comparison_line, preset_comparison


def _config(sa: int) -> dict:
    return {"sa_size": sa, "pa_size": 0, "pt_length": 0, **{f"layer_{i}": 1 for i in range(2)}}


@pytest.fixture
def run(tmp_path) -> RunFolder:
    run = RunFolder(tmp_path / "run")
    for trial_id, sa, score, fraction in (("a", 8, 0.8, 0.01), ("b", 2, 0.7, 0.002)):
        result = {"score": score, "param_fraction": fraction, "fidelity": 4, "target_fidelity": 4}
        run.append_record(trial_record(trial_id, _config(sa), result, "completed"))
    return run


def test_report_writes_figures_and_tables(run, tmp_path):
    other = RunFolder(tmp_path / "random")
    other.append_record(run.read_records()[0])
    write_report(run, compare=[other.path])
    report = (run.report_dir / "report.md").read_text()
    assert "2 completed evaluations; 2 on the Pareto front." in report
    # Records written before LoRA was a dimension read with R_LoRA 0.
    assert "| 0 | 2 | 0 | 0 | 0 | 11 | 0.2000 | 0.7000 | completed |" in report
    assert "Baselines" not in report
    for name in ("pareto_front.png", "hypervolume.png"):
        assert (run.report_dir / name).stat().st_size > 1000


def _baseline(name: str, score: float, fraction: float) -> dict:
    mean = {"score": {"mean": score, "std": 0.0}, "param_fraction": {"mean": fraction, "std": 0.0}}
    return {"name": name, "metrics": mean}


def test_report_shows_baselines_beside_the_front(run):
    run.write_baselines([_baseline("lora", 0.75, 0.003), _baseline("head-only", 0.72, 0.0)])
    write_report(run)
    report = (run.report_dir / "report.md").read_text()
    assert "## Baselines at the same fidelity" in report
    assert baselines_table(run.read_baselines()) in report
    assert "| lora | 0.3000 | 0.7500 |" in report
    # Each front point says which baseline dominates it: head-only beats b (0.70 at 0.2%).
    assert "| 0 | 2 | 0 | 0 | 0 | 11 | 0.2000 | 0.7000 | completed | head-only |" in report
    assert "| 1 | 8 | 0 | 0 | 0 | 11 | 1.0000 | 0.8000 | completed | - |" in report
    assert (
        "Best found with no more than lora's fraction (0.3000%): 0.7000 at 0.2000% (trial b), "
        "behind lora (0.7500, best preset trained)." in report
    )
    front = run.write_front(run.read_records())
    assert [r["dominated_by"] for r in front] == [["head-only"], []]
    assert run.read_pareto() == front


@pytest.mark.parametrize(
    ("baselines", "line"),
    [
        ([], "No preset was trained beside the search"),
        ([_baseline("head-only", 0.6, 0.0)], "No preset was trained beside the search"),
        (
            [_baseline("lora", 0.7, 0.001)],
            "The search found no configuration with no more than lora's fraction (0.1000%); "
            "lora scores 0.7000.",
        ),
        (
            [_baseline("serial", 0.75, 0.005), _baseline("lora", 0.7, 0.5)],
            "Best found with no more than serial's fraction (0.5000%): 0.7000 at 0.2000% "
            "(trial b), behind serial",
        ),
        (
            [_baseline("lora", 0.65, 0.003)],
            "Best found with no more than lora's fraction (0.3000%): 0.7000 at 0.2000% "
            "(trial b), ahead of lora (0.6500, best preset trained).",
        ),
    ],
    ids=["none", "head-only", "none-as-cheap", "best-preset", "ahead"],
)
def test_the_summary_line_compares_with_the_best_preset(run, baselines, line):
    comparison = preset_comparison(run.completed(), baselines)
    assert line in comparison_line(comparison)


def test_reference_point_is_the_searchs(run):
    assert reference_point_of(run) == DEFAULT_REFERENCE_POINT
    run.write_options(SearchOptions(reference_point=(0.5, 0.02)))
    assert reference_point_of(run) == (0.5, 0.02)


def test_best_under_a_budget(run):
    assert best_under(run.path, 0.005)["trial_id"] == "b"
    assert best_under(run, 1.0)["trial_id"] == "a"
    with pytest.raises(ConfigurationError, match="`max_fraction`"):
        best_under(run, 0.001)


def test_markdown_table_of_no_records():
    assert markdown_table([]).count("\n") == 1


def test_peak_memory_is_kept_and_shown_in_the_last_column(tmp_path):
    from autopeft_ray.objectives import PEAK_MEMORY
    from autopeft_ray.run.records import KEPT_RESULT_KEYS

    assert PEAK_MEMORY in KEPT_RESULT_KEYS
    result = {"score": 0.6, "param_fraction": 0.01, "fidelity": 4, PEAK_MEMORY: 1.234}
    record = trial_record("m", _config(4), result, "completed")
    assert record["metrics"][PEAK_MEMORY] == 1.234
    table = markdown_table([record])
    assert table.splitlines()[0].endswith("| status | peak memory (GiB) |")
    assert table.splitlines()[2].endswith("| completed | 1.23 |")
    # Records written before memory was measured read "-".
    del record["metrics"][PEAK_MEMORY]
    assert markdown_table([record]).splitlines()[2].endswith("| completed | - |")
