"""The README's examples, run as written, so that they stay true.

Blocks that follow the line ``MARKER`` in README.md are run: the ``bash`` block
command by command in a fresh folder (each command's files are checked), the
``python`` blocks one after the other in one namespace. Every ``autopeft-ray``
command anywhere in the README, run or not, must parse with the real CLI parser.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autopeft_ray.cli import build_parser
from autopeft_ray.space import PeftConfiguration

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- tested: tests/e2e/test_readme.py runs this block as written -->"


def _blocks(text: str, language: str) -> list[tuple[int, str]]:
    """(line number, code) of the ``language`` blocks right after ``MARKER``."""
    pattern = re.compile(re.escape(MARKER) + r"\n```" + language + r"\n(.*?)^```$", re.S | re.M)
    return [(text[: m.start(1)].count("\n") + 1, m.group(1)) for m in pattern.finditer(text)]


def _commands(block: str) -> list[str]:
    """The commands of a shell block, continuation lines kept, comment lines dropped."""
    commands: list[str] = []
    current: list[str] = []
    for line in block.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current.append(line)
        if not line.rstrip().endswith("\\"):
            commands.append("\n".join(current))
            current = []
    assert not current, f"a command ends with a line continuation: {current}"
    return commands


def _all_cli_commands(text: str) -> list[str]:
    """Every ``autopeft-ray ...`` command in the README's shell blocks."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```$", text, re.S | re.M):
        commands += [c for c in _commands(block) if _argv(c)[0].endswith("autopeft-ray")]
    return commands


def _argv(command: str) -> list[str]:
    return shlex.split(command.replace("\\\n", " "), comments=True)


def _subcommand(command: str) -> str:
    return _argv(command)[1]


def test_readme_documents_every_command_and_each_example_parses() -> None:
    text = README.read_text()
    commands = _all_cli_commands(text)
    parser = build_parser()
    documented = {_subcommand(c) for c in commands}
    subparsers = next(a for a in parser._actions if a.dest == "command")
    assert documented == set(subparsers.choices), "every command has an example"
    for command in commands:
        parser.parse_args(_argv(command)[1:])  # argparse exits (a test error) on a wrong flag

    main, own = _blocks(text, "bash")
    assert [_subcommand(c) for c in _commands(main[1])] == [
        "search",
        "report",
        "export-ax",
        "evaluate",
        "transfer",
    ]
    assert [_subcommand(c) for c in _commands(own[1])] == ["search", "report"]
    assert len(_blocks(text, "python")) == 2


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "trials.jsonl").read_text().splitlines()]


def _front_under(folder: Path, fraction: float) -> list[dict]:
    pareto = json.loads((folder / "pareto.json").read_text())
    return [r for r in pareto if r["metrics"]["param_fraction"] <= fraction]


#: Lines that read as errors or warnings to a user: XLA's CPU-feature lines
#: ("E1130 ... cpu_aot_loader.cc ... SIGILL"), Python warnings, tracebacks.
ALARMING = re.compile(
    r"^E\d{4} |SIGILL|cpu_aot_loader|Traceback|NumericalWarning|UserWarning|FutureWarning"
    r"|RuntimeWarning|InputDataWarning|OptimizationWarning"
)


def _check_search(cwd: Path, command: str, out: str) -> None:
    """The search as a user runs it (its own Ray, NUTS and a model-based step), in the
    space with LoRA, with two baselines: the run folder, and a quiet terminal."""
    run = cwd / "runs" / "pl"
    records = _records(run)
    assert [r["status"] for r in records] == ["completed"] * 3
    assert all(r["metrics"]["fidelity"] == 2 for r in records)
    canonical = {PeftConfiguration.from_dict(r["configuration"]).model_key() for r in records}
    assert len(canonical) == 3, "no configuration evaluated twice"
    # The space with LoRA: every trial config holds a rank, drawn from its choices.
    assert all(r["configuration"]["lora_rank"] in (0, 1, 2, 4, 8, 16, 32, 64) for r in records)
    pareto = json.loads((run / "pareto.json").read_text())
    assert 1 <= len(pareto) <= 3
    # Each front member is marked with the baselines (head-only, lora) that dominate it.
    assert all(set(p["dominated_by"]) <= {"head-only", "lora"} for p in pareto)
    for name in (
        "search.json",
        "trials.csv",
        "pareto.csv",
        "adapters/00/adapter_setup.json",
        "report/pareto_front.png",
        "report/hypervolume.png",
        "report/report.md",
        "report/relevance.png",
    ):
        assert (run / name).stat().st_size > 0, name
    # The searcher fitted NUTS (one model-based step): its relevance, LoRA's rank included.
    relevance = json.loads((run / "relevance.json").read_text())
    assert relevance["source"] == "saas-nuts" and len(relevance["dimensions"]) == 10
    assert "lora_rank" in {d["name"] for d in relevance["dimensions"]}
    # Baselines at the search's fidelity, trained as evaluations, not as searched trials.
    baselines = json.loads((run / "baselines.json").read_text())
    assert [b["name"] for b in baselines] == ["head-only", "lora"]
    head, lora = (b["metrics"] for b in baselines)
    assert head["param_fraction"]["mean"] == 0.0 and 0 < lora["param_fraction"]["mean"] < 0.01
    assert all(0 <= b["metrics"]["score"]["mean"] <= 1 for b in baselines)
    report = (run / "report" / "report.md").read_text()
    assert "## Baselines at the same fidelity" in report and "| lora |" in report
    assert "Pareto front" in out
    alarming = [line[:200] for line in out.splitlines() if ALARMING.search(line)]
    assert not alarming, alarming


def _check_report(cwd: Path, command: str, out: str) -> None:
    report = cwd / "runs" / "pl" / "report"
    for name in ("report.md", "pareto_front.png", "hypervolume.png", "relevance.png"):
        assert (report / name).stat().st_size > 0, name
    assert "Best under 1.5% parameters" in out
    assert "## Which dimensions matter" in (report / "report.md").read_text()


def _check_export_ax(cwd: Path, command: str, out: str) -> None:
    from ax.api.client import Client

    client = Client.load_from_json_file(str(cwd / "runs" / "pl" / "ax_experiment.json"))
    assert len(client._experiment.trials) == 3  # noqa: SLF001 (baselines are not trials)


def _check_evaluate(cwd: Path, command: str, out: str) -> None:
    run = cwd / "runs" / "pl"
    rows = json.loads((run / "evaluate" / "evaluation.json").read_text())
    presets = [r["configuration"].get("preset") for r in rows]
    assert presets.count("lora") == 1
    assert len(rows) == len(_front_under(run, 0.015)) + 1
    for row in rows:
        assert row["seeds"] == 2 and row["task"] == "pang_lee_polarity"
        assert set(row["metrics"]["test_score"]) == {"mean", "std"}
        assert 0 <= row["metrics"]["test_score"]["mean"] <= 1


def _check_transfer(cwd: Path, command: str, out: str) -> None:
    run = cwd / "runs" / "pl"
    rows = json.loads((run / "transfer" / "transfer_rotten_tomatoes.json").read_text())
    assert len(rows) == len(_front_under(run, 0.015))
    assert all(r["task"] == "rotten_tomatoes" and r["seeds"] == 1 for r in rows)
    assert "Not a transfer result: pang_lee_polarity and rotten_tomatoes both come from" in out


CHECKS = {
    "search": _check_search,
    "report": _check_report,
    "export-ax": _check_export_ax,
    "evaluate": _check_evaluate,
    "transfer": _check_transfer,
}


def _check_own_search(cwd: Path, command: str, out: str) -> None:
    run = cwd / "runs" / "own"
    assert [r["status"] for r in _records(run)] == ["completed"] * 2
    task = json.loads((run / "search.json").read_text())["settings"]["task"]
    assert task["name"] == "reviews" and task["label_names"] == ["bad", "good"]
    assert task["text_columns"] == ["review"] and task["label_column"] == "verdict"


def _check_own_report(cwd: Path, command: str, out: str) -> None:
    assert (cwd / "runs" / "own" / "report" / "report.md").stat().st_size > 0


OWN_CHECKS = {"search": _check_own_search, "report": _check_own_report}


@pytest.mark.slow
@pytest.mark.long(reason="runs every README command as a user would: seven CLI runs")
def test_readme_commands_run_as_written(ray_session, tmp_path: Path, tmp_cache: str) -> None:
    main, own = _blocks(README.read_text(), "bash")
    # Put only `autopeft-ray` on PATH: the venv's own ninja (1.13) beside the system's
    # (1.11) would make BoTorch rebuild its C++ kernel (a minute) at every switch.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "autopeft-ray").symlink_to(Path(sys.executable).with_name("autopeft-ray"))
    work = tmp_path / "work"
    work.mkdir()
    # The commands run from a repository root: they read the fixtures there.
    shutil.copytree(README.parent / "tests" / "fixtures", work / "tests" / "fixtures")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        # Each command joins this session's Ray (~10 s less per command than starting one).
        "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "TOKENIZERS_PARALLELISM": "false",
    }
    timings = {}
    blocks = [(c, CHECKS) for c in _commands(main[1])] + [
        (c, OWN_CHECKS) for c in _commands(own[1])
    ]
    for command, checks in blocks:
        name = _subcommand(command)
        # The first search runs as a user runs it: its own Ray, a fresh cache, and what
        # C++ libraries write to the terminal shown (the check that nothing alarms).
        first = checks is CHECKS and name == "search"
        own = {k: v for k, v in env.items() if k not in ("RAY_ADDRESS", "TF_CPP_MIN_LOG_LEVEL")}
        started = time.monotonic()
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=work,
            env={**own, "AUTOPEFT_RAY_CACHE": str(tmp_path / "fresh-cache")} if first else env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        timings[f"{name} ({'own data' if checks is OWN_CHECKS else 'main'})"] = round(
            time.monotonic() - started
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        checks[name](work, command, done.stdout + done.stderr if first else done.stdout)
    print("README commands, seconds:", timings)


@pytest.mark.slow
@pytest.mark.long(
    reason="every Python block of the README as written: Tuner searches on the real "
    "model (one under MO-ASHA with the search callbacks), the Pareto frame, Ax's export"
)
def test_readme_python_examples_run_as_written(
    ray_session, tmp_path: Path, tmp_cache: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for line, code in _blocks(README.read_text(), "python"):
        exec(compile(code, f"{README}:{line}", "exec"), namespace)

    results = namespace["results"]
    assert len(results) == 2 and not results.errors
    for result in results:
        assert result.metrics["fidelity"] in (2, 4)  # ASHA may stop a trial at step 2
        assert 0 <= result.metrics["param_fraction"] < 1  # 0: a degenerate configuration
    assert namespace["searcher"].num_suggested == 2
    analysis = namespace["analysis"]
    assert len(analysis.trials) == 2
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    assert analysis.best_result["fidelity"] == 4
    assert (tmp_path / "runs" / "tuner").is_dir() and (tmp_path / "runs" / "tune_run").is_dir()
