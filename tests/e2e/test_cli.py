"""End-to-end: the CLI on the small real task, and its errors before Ray starts.

The README's command block is the end-to-end run of search (in the space with
LoRA, with baselines), report, export-ax, evaluate and transfer, checked in
tests/e2e/test_readme.py; this file holds the ASHA search and every error path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autopeft_ray.cli import main


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "trials.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_search_with_asha_stops_by_pareto_rungs_and_fits_every_rung(
    ray_session, tmp_path, tiny_search_args
):
    """3 random trials under ASHA, then one model-based step: by default under a scheduler
    that stops trials, the multi-fidelity MAP model with the cost input, which fits all 3
    ended trials, whichever rung they reached."""
    out = tmp_path / "asha"
    code = main(
        [
            "search",
            *tiny_search_args,
            "--max-steps",
            "4",
            "--num-evaluations",
            "2",
            "--scheduler",
            "asha",
            "--initial",
            "3",
            "--model-based",
            "1",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    records = _lines(out)
    assert len(records) == 4
    assert {r["status"] for r in records} <= {"completed", "early_stopped"}
    assert all(r["metrics"]["fidelity"] in (2, 4) for r in records)
    states = sorted(out.glob("tune/**/searcher-state-*.pkl"))
    assert states, "Tune saved the searcher's state"
    state = json.loads(states[-1].read_text())
    assert state["settings"]["multi_fidelity"] is True
    assert state["settings"]["cost_input"] is True
    saved = json.loads((out / "search.json").read_text())
    assert (saved["surrogate"], saved["multi_fidelity"], saved["cost_input"]) == (
        "saas-map",
        True,
        True,
    )
    steps = [t for t in state["timings"] if "total_s" in t]
    assert [t["n_observations"] for t in steps] == [3]


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["search", "--task", "rtee"], r"`--task` 'rtee' is not a registered task \(rte, .*hub"),
        (["search", "--scheduler", "asha", "--num-evaluations", "1"], r"num_evaluations >= 2"),
        pytest.param(
            ["search", "--gpus-per-trial", "1"],
            r"no CUDA GPU",
            marks=pytest.mark.skipif(_has_cuda(), reason="this machine has a GPU"),
        ),
        (
            ["search", "--batch-size", "0"],
            r"`--batch-size` should be a positive integer up to 2147483647, got 0",
        ),
        (["search", "--model", "/no/such/model"], r"`--model` '/no/such/model' is not a folder"),
        (
            ["evaluate", "/no/such/run"],
            r"`run folder` should be a folder written by .*does not exist",
        ),
        (
            ["report", "/no/such/run"],
            r"`run folder` should be a folder written by .*does not exist",
        ),
        (
            ["search", "--reference-point", "0", "1.5"],
            r"`--reference-point` should be .*fraction in \(0, 1\], got \(0.0, 1.5\)",
        ),
    ],
)
def test_bad_input_fails_before_ray_with_a_clear_message(argv, pattern, capsys, tmp_path):
    import re

    import ray

    was_running = ray.is_initialized()
    assert main([*argv, "--output", str(tmp_path / "x")] if argv[0] == "search" else argv) == 2
    err = capsys.readouterr().err
    assert re.search(pattern, err), err
    assert "Traceback" not in err
    assert ray.is_initialized() == was_running, "Ray must not start on bad input"


def test_argparse_rejects_unknown_space_naming_the_choices(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["search", "--space", "sa-pt"])
    assert exc.value.code == 2
    assert "invalid choice: 'sa-pt'" in capsys.readouterr().err


def test_evaluate_and_transfer_default_to_the_searched_model_and_task(tmp_path):
    from autopeft_ray.cli import _settings, build_parser
    from autopeft_ray.config import SearchOptions, TrainingSettings
    from autopeft_ray.run import RunFolder

    searched = TrainingSettings(
        task="pang_lee_polarity", max_length=48, data_files=str(tmp_path), train_examples=64
    )
    run = tmp_path / "run"
    RunFolder(run).write_options(SearchOptions(settings=searched))
    parser = build_parser()

    evaluate = _settings(parser.parse_args(["evaluate", str(run)]))
    assert (evaluate.task, evaluate.max_length, evaluate.data_files) == (
        "pang_lee_polarity",
        48,
        str(tmp_path),
    )
    assert evaluate.model == searched.model
    assert evaluate.train_examples is None, "the search's low fidelity is not inherited"
    given = _settings(parser.parse_args(["evaluate", str(run), "--task", "rte"]))
    assert given.task == "rte" and given.max_length == 48
    transfer = _settings(parser.parse_args(["transfer", str(run), "--to", "rte"]))
    assert transfer.max_length == 48 and transfer.data_files is None
    no_search = _settings(parser.parse_args(["evaluate", str(tmp_path / "other")]))
    assert (no_search.task, no_search.max_length) == (TrainingSettings().task, 128)


def test_resume_refuses_a_moved_run_folder_before_ray(tmp_path, capsys):
    import ray

    from autopeft_ray.config import SearchOptions
    from autopeft_ray.run import RunFolder

    started_in = tmp_path / "was-here"
    run = tmp_path / "now-here"
    (run / "tune").mkdir(parents=True)
    RunFolder(run).write_options(SearchOptions(output=str(started_in)))
    was_running = ray.is_initialized()
    assert main(["search", "--output", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"`--output` should be the folder the search was started in, {started_in}" in err
    assert f"move it back to {started_in}" in err and "Traceback" not in err
    assert ray.is_initialized() == was_running


# -- hardening: damaged run folders, odd paths, flags with --resume ---------------------


def test_report_on_a_mistyped_folder_exits_2_and_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "no_such_run"
    assert main(["report", str(missing)]) == 2
    assert "`run folder` should be a folder written by" in capsys.readouterr().err
    assert not missing.exists()


def test_resume_refuses_flags_it_would_ignore(tmp_path, capsys):
    code = main(
        ["search", "--output", str(tmp_path), "--resume", "--initial", "5", "--max-steps", "50"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--max-steps, --initial cannot be given with it" in err


def test_a_model_folder_without_config_is_refused(tmp_path, capsys):
    empty = tmp_path / "emptymodel"
    empty.mkdir()
    code = main(["search", "--model", str(empty), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "is a folder without config.json" in err and "Traceback" not in err


def test_an_output_that_is_a_file_fails_in_one_line(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("")
    assert main(["search", "--output", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "`--output` should be a folder" in err


def test_long_values_are_cut_in_messages(capsys):
    assert main(["search", "--task", "x" * 5000]) == 2
    err = capsys.readouterr().err
    assert "(5002 characters)" in err and len(err) < 1500


def test_a_cut_short_record_is_skipped_by_report_and_a_damaged_one_named(tmp_path, capsys):
    from autopeft_ray.run import RunFolder, trial_record

    run = RunFolder(tmp_path / "run")
    config = {"sa_size": 8, "pa_size": 0, "pt_length": 0, "layer_0": 1, "layer_1": 0}
    result = {"score": 0.7, "param_fraction": 0.01, "fidelity": 2, "target_fidelity": 2}
    run.append_record(trial_record("a", config, result, "completed"))
    trials = run.file(RunFolder.TRIALS)
    with trials.open("a") as f:
        f.write('{"trial_id": "b", "sta')
    assert main(["report", str(run.path)]) == 0
    trials.write_text(trials.read_text().replace('{"trial_id": "b", "sta', "oops\n") + "{}\n")
    assert main(["report", str(run.path)]) == 2
    assert f"{trials} line 2 is not a trial record" in capsys.readouterr().err
    # evaluate stops on it too, before Ray starts, even though pareto.json is there.
    run.write_front([trial_record("a", config, result, "completed")])
    assert main(["evaluate", str(run.path), "--seeds", "0"]) == 2
    err = capsys.readouterr().err
    assert f"{trials} line 2 is not a trial record" in err and "--resume" in err


# -- your own data -----------------------------------------------------------------------

REVIEWS = Path(__file__).resolve().parents[1] / "fixtures" / "reviews.csv"


def test_task_from_a_file_with_named_columns():
    from autopeft_ray.cli import _settings, build_parser

    args = build_parser().parse_args(
        ["search", "--task", str(REVIEWS), "--text-columns", "review", "--label-column", "verdict"]
    )
    settings = _settings(args)
    assert settings.task_name == "reviews"
    assert settings.task["label_names"] == ["bad", "good"]
    assert settings.task["data_files"] == str(REVIEWS)


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (
            ["--text-columns", "review", "--label-column", "nope"],
            r"label column 'nope' is not in .*columns found",
        ),
        (["--text-columns", "body"], r"Text column\(s\) \['body'\] not in"),
        (["--regression", "--text-columns", "review", "--label-column", "verdict"], "not a number"),
        (["--metric", "f1", "--label-column", "verdict"], "No text column"),
    ],
)
def test_bad_own_data_exits_2_before_ray(argv, pattern, capsys, tmp_path):
    import re

    import ray

    was_running = ray.is_initialized()
    code = main(["search", "--task", str(REVIEWS), *argv, "--output", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and re.search(pattern, err), err
    assert "Traceback" not in err and ray.is_initialized() == was_running
    assert not (tmp_path / "x").exists()


def test_data_flags_do_not_change_a_registered_task(capsys):
    assert main(["search", "--task", "rte", "--text-columns", "premise"]) == 2
    assert "registered task, so --text-columns cannot change it" in capsys.readouterr().err


def test_ctrl_c_while_the_data_is_prepared_exits_2_in_one_line(tmp_path, capsys, monkeypatch):
    import autopeft_ray.experiment.search as search

    def interrupted(options):
        raise KeyboardInterrupt

    monkeypatch.setattr(search, "prepare", interrupted)
    output = tmp_path / "run"
    assert main(["search", "--output", str(output)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted (Ctrl-C)" in err and "Traceback" not in err
    assert not output.exists()


@pytest.mark.parametrize(
    "output", ["/proc/autopeft-nope/run", "/tmp/" + "x" * 300, "/tmp/" + "/d" * 3000]
)
def test_an_output_that_cannot_be_created_exits_2_in_one_line(output, capsys):
    assert main(["search", "--output", output]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "`--output` should be a folder this user can write" in err
    assert "Traceback" not in err and len(err) < 600


def test_a_task_spec_without_a_required_field_names_it(tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "mine", "text_columns": ["sentence"], "num_labels": 2}))
    assert main(["search", "--task", str(spec), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "field(s) metrics" in err and "Add 'metrics'" in err and "Traceback" not in err


def test_a_folder_of_many_files_is_listed_short(tmp_path, capsys):
    for i in range(150):
        (tmp_path / f"file{i:03d}.txt").write_text("x")
    assert main(["search", "--task", str(tmp_path), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "(151 in all)" in err or "(150 in all)" in err
    assert len(err) < 1200
