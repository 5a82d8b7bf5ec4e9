"""PEFTBench: keys, stratified draws, the reader, and a replay driven over a small table.

The table here is written by the test (synthetic scores on real configurations
of the offline model's space); the replay drives the real searchers through the
Ray Tune ``Searcher`` API, as ``benchmarks/replay.py`` does over the real table.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import random
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.models import DEFAULT_MODEL
from autopeft_ray.objectives.cost import ParamCost
from autopeft_ray.space import PeftConfiguration, SearchSpace
from autopeft_ray.testing.peftbench import (
    RECORDS_FILE,
    PeftBench,
    configuration_key,
    configuration_of,
    log_fraction_bins,
    stratified_draw,
)

REPO = Path(__file__).resolve().parents[2]


def test_keys_round_trip_with_lora_and_presets() -> None:
    config = PeftConfiguration(8, 0, 16, (True, False, True, True, False, True), lora_rank=4)
    key = configuration_key(config)
    assert key == "sa8-pa0-pt16-lora4-L101101"
    assert configuration_of(key) == config.model_key()
    assert configuration_key("lora") == "preset:lora"
    assert configuration_of("preset:lora") == "lora"
    # Every degenerate configuration (head-only) has one key.
    head_only = configuration_key(PeftConfiguration(0, 0, 0, (False,) * 6))
    assert configuration_key(PeftConfiguration(8, 0, 0, (False,) * 6)) == head_only
    with pytest.raises(ConfigurationError, match="key"):
        configuration_of("sa8-banana")


def test_stratified_draw_fills_every_bin_evenly() -> None:
    # 100 keys in the top half-decade, 4 in the cheapest: a uniform draw of 20 would
    # expect under one cheap key; the stratified draw takes all 4.
    fractions = {f"cheap{i}": 1e-4 * (1 + i / 10) for i in range(4)}
    fractions |= {f"mid{i}": 1e-3 * (1 + i / 100) for i in range(30)}
    fractions |= {f"dear{i}": 2e-2 * (1 + i / 1000) for i in range(100)}
    fractions["head"] = 0.0
    drawn = stratified_draw(fractions, 20, random.Random(0))
    assert len(drawn) == len(set(drawn)) == 20
    assert "head" not in drawn
    assert sum(k.startswith("cheap") for k in drawn) == 4
    assert sum(k.startswith("mid") for k in drawn) == 8
    assert sum(k.startswith("dear") for k in drawn) == 8
    assert len(log_fraction_bins(fractions)) == 3
    with pytest.raises(ConfigurationError, match="count"):
        stratified_draw(fractions, 200, random.Random(0))


def _score(config: PeftConfiguration, fraction: float, seed: int) -> float:
    """A smooth synthetic score: rises with log fraction, plus a small seed effect."""
    return 0.6 + 0.02 * (math.log10(fraction) + 5) + 0.003 * seed + 0.001 * sum(config.layers)


def _write_table(folder: Path, configs: list[PeftConfiguration], cost: ParamCost) -> None:
    rows: list[dict[str, Any]] = []
    for i, config in enumerate(configs):
        fraction = cost(config)
        for seed in (0, 1) if i % 3 == 0 else (0,):
            score = _score(config, fraction, seed)
            rows.append(
                {
                    "key": configuration_key(config),
                    "fidelity": 1,
                    "seed": seed,
                    "dev_score": score,
                    "test_score": score - 0.01,
                    "param_fraction": fraction,
                    "seconds": 30.0 + i % 7,
                    "test_examples": 1000,
                }
            )
    for preset, fraction, score in (("lora", 3e-3, 0.65), ("serial", 5e-3, 0.64)):
        for fidelity in (1, 4):
            rows.append(
                {
                    "key": configuration_key(preset),
                    "fidelity": fidelity,
                    "seed": 0,
                    "dev_score": score,
                    "test_score": score,
                    "param_fraction": fraction,
                    "seconds": 40.0 * fidelity,
                    "test_examples": 1000,
                }
            )
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / RECORDS_FILE)


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SearchSpace, ParamCost]:
    space = SearchSpace.from_model_config(DEFAULT_MODEL, "full")
    cost = ParamCost.from_model(DEFAULT_MODEL)
    rng = random.Random(0)
    configs: dict[str, PeftConfiguration] = {}
    while len(configs) < 40:
        config = space.sample(rng)
        if not config.is_degenerate:
            configs.setdefault(configuration_key(config), config.model_key())
    folder = tmp_path_factory.mktemp("peftbench")
    _write_table(folder, list(configs.values()), cost)
    return folder, space, cost


def test_reader_looks_up_rows_seeds_and_means(table: tuple[Path, SearchSpace, ParamCost]) -> None:
    folder, _, _ = table
    bench = PeftBench(folder)
    keys = bench.keys(1)
    assert len(keys) == 40 and not any(k.startswith("preset:") for k in keys)
    assert "preset:lora" in bench.keys(4, presets=True)
    two_seeds = next(k for k in keys if len(bench.rows_of(k, 1)) == 2)
    drawn = {bench.lookup(two_seeds, 1, random.Random(s)).seed for s in range(20)}
    assert drawn == {0, 1}
    rows = bench.rows_of(two_seeds, 1)
    assert bench.mean(two_seeds, 1, "dev_score") == pytest.approx(
        (rows[0].dev_score + rows[1].dev_score) / 2
    )
    assert math.isnan(bench.mean(two_seeds, 4, "test_score"))
    with pytest.raises(ConfigurationError, match="candidates="):
        bench.lookup(two_seeds, 4)
    with pytest.raises(ConfigurationError, match="table folder"):
        PeftBench(folder / "nowhere")


def _replay_module() -> Any:
    spec = importlib.util.spec_from_file_location("replay", REPO / "benchmarks" / "replay.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("replay", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["random", "autopeft-map-auto", "tpe"])
def test_replay_evaluates_distinct_candidates_in_arrival_order(
    table: tuple[Path, SearchSpace, ParamCost], name: str
) -> None:
    folder, space, cost = table
    replay = _replay_module()
    problem = replay.TableProblem(PeftBench(folder), space)
    assert len(problem.configs) == 40 and len(problem.digest) == 10
    searcher, mapped = replay.make_searcher(name, problem, cost, seed=0, initial=4)
    assert mapped == (name == "tpe")  # Optuna cannot be restricted: proposals are mapped
    out = replay.replay(searcher, mapped, problem, replay_seed=0, budget=8, concurrency=2)
    evaluations = out["evaluations"]
    keys = [e["key"] for e in evaluations]
    assert len(keys) == len(set(keys)) == 8
    assert set(keys) <= set(problem.keys)
    for e in evaluations:  # each result is one of the configuration's recorded seeds
        row = next(r for r in PeftBench(folder).rows_of(e["key"], 1) if r.seed == e["seed"])
        assert (e["score"], e["fraction"]) == (row.dev_score, row.param_fraction)
        assert e["end"] > e["start"]
    if name.startswith("autopeft"):
        assert out["model_steps"] >= 1 and out["model_fallbacks"] == 0
    # The same replay seed draws the same seeds (common random numbers across contestants).
    again = replay.replay(
        replay.make_searcher("random", problem, cost, seed=1, initial=4)[0],
        False,
        problem,
        replay_seed=0,
        budget=40,
        concurrency=4,
    )
    seeds = {e["key"]: e["seed"] for e in again["evaluations"]}
    assert all(seeds[e["key"]] == e["seed"] for e in evaluations)


def test_replay_digest_names_the_seeds_and_seed0_points_do_not_reward_luck(
    table: tuple[Path, SearchSpace, ParamCost], tmp_path: Path
) -> None:
    folder, space, cost = table
    replay = _replay_module()
    bench = PeftBench(folder)
    problem = replay.TableProblem(bench, space)
    # The same candidates with seed 0 only: another digest (a run on it is not reused).
    rows = pq.read_table(folder / RECORDS_FILE).to_pylist()
    single = tmp_path / "single"
    single.mkdir()
    pq.write_table(pa.Table.from_pylist([r for r in rows if r["seed"] == 0]), single / RECORDS_FILE)
    alone = replay.TableProblem(PeftBench(single), space)
    assert alone.keys == problem.keys and alone.digest != problem.digest
    # Seed 0 alone is named by its keys, as the digests of earlier replays were.
    assert alone.digest == hashlib.sha256("\n".join(sorted(alone.keys)).encode()).hexdigest()[:10]
    two_seeds = next(k for k in problem.keys if len(bench.rows_of(k, 1)) == 2)
    seed0 = next(r for r in bench.rows_of(two_seeds, 1) if r.seed == 0)
    lucky = {"key": two_seeds, "seed": 1, "score": 1.0, "fraction": 0.01}
    assert replay.seed0_points([lucky], bench) == [(seed0.dev_score, 0.01)]


def test_picks_without_a_full_fidelity_row_are_what_stage_picks_trains(
    table: tuple[Path, SearchSpace, ParamCost], tmp_path: Path
) -> None:
    folder, _, _ = table
    replay = _replay_module()
    rows = pq.read_table(folder / RECORDS_FILE).to_pylist()
    cheap = sorted(
        {r["key"]: r["param_fraction"] for r in rows if r["param_fraction"] < 3e-3}.items(),
        key=lambda kv: kv[1],
    )
    (a, fa), (b, fb), (c, fc) = cheap[:3]
    dear = next(r for r in rows if r["param_fraction"] > 5e-3)
    # b has a 4x row: picked, but not to be trained again
    rows.append({**next(r for r in rows if r["key"] == b), "fidelity": 4})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / RECORDS_FILE)
    bench = PeftBench(tmp_path)

    def run(contestant: str, budget: int, evaluations: list[tuple[str, float, float]]) -> dict:
        return {
            "contestant": contestant,
            "budget": budget,
            "evaluations": [
                {"trial": i, "key": k, "score": score, "fraction": f, "end": float(i)}
                for i, (k, score, f) in enumerate(evaluations)
            ],
        }

    runs = [
        # after 1 evaluation nothing is under a preset's fraction; after 3, a is the pick
        run("tpe", 3, [(dear["key"], 0.9, dear["param_fraction"]), (a, 0.7, fa), (c, 0.6, fc)]),
        # b is picked (it has a 4x row); c only after 4 evaluations, twice the budget of 2
        run("random-2x", 4, [(b, 0.8, fb), (c, 0.5, fc), (a, 0.4, fa), (c, 0.9, fc)]),
        run("random", 1, [(c, 0.95, fc)]),  # a budget of 1: counted at 1, not at 2
    ]
    # c is picked 4 times (2 budgets or runs x 2 presets), a twice: the most picked first
    assert replay.picks_without(runs, bench, 4, budgets=(1, 2)) == [c, a]
    assert replay.picks_without(runs, bench, 4, budgets=(1,)) == [c]
    assert replay.picks_without(runs, bench, 1, budgets=(1, 2)) == []  # all have 1x rows
    # The build's stage picks plans the same keys, for the budgets and spaces asked.
    build = _build_module()
    replays = tmp_path / "replays"
    replays.mkdir()
    lines = [json.dumps({**r, "space": "full"}) + "\n" for r in runs]
    (replays / "runs.jsonl").write_text("".join(lines))
    argv = ["--output", str(tmp_path), "--picks-from", str(replays), "--picks-budgets"]
    assert build.replay_picks(build.parse_args([*argv, "1", "2"])) == [c, a]
    assert build.replay_picks(build.parse_args([*argv, "1"])) == [c]
    assert build.replay_picks(build.parse_args([*argv, "1", "2", "--picks-spaces", "sa"])) == []
    assert build.replay_picks(build.parse_args(argv[:-1])) == []  # 20, 40, 80: none so long


def _build_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "peftbench_build", REPO / "benchmarks" / "peftbench" / "build.py"
    )
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return build


def test_summary_says_how_the_fidelities_rank_alike(capsys: pytest.CaptureFixture[str]) -> None:
    build = _build_module()

    def row(key: str, fidelity: int, dev: float, test: float, seed: int = 0) -> dict[str, Any]:
        return {
            "key": key,
            "fidelity": fidelity,
            "seed": seed,
            "dev_score": dev,
            "test_score": test,
        }

    # 1x: a < b < c < preset; 4x: the same order on dev except that c falls to last
    rows = [
        row("a", 1, 0.60, 0.60), row("b", 1, 0.65, 0.66), row("c", 1, 0.70, 0.69),
        row("preset:lora", 1, 0.72, 0.71), row("c", 1, 0.50, 0.50, seed=1),
        row("a", 4, 0.70, 0.70), row("b", 4, 0.75, 0.76), row("c", 4, 0.60, 0.79),
        row("preset:lora", 4, 0.80, 0.81), row("d", 4, 0.90, 0.90),
    ]  # fmt: skip
    build.fidelity_agreement(rows, 1, 4)
    every, space = capsys.readouterr().out.splitlines()
    assert every.startswith("x1 against x4, seed 0, 4 configurations (every row): dev rho 0.400")
    assert "test rho 1.000" in every and "the x1 best on dev is #1 at x4" in every
    assert space.startswith("x1 against x4, seed 0, 3 configurations (the space's): dev rho -0.500")
    assert space.endswith("the x1 best on dev is #3 at x4")


def test_log_hypervolume_counts_the_cheap_end() -> None:
    replay = _replay_module()
    nadir = (0.5, 0.1)
    best_only = [(0.70, 0.01)]
    with_cheap = [(0.70, 0.01), (0.60, 1e-4)]
    # Linear: the cheap point adds about 5%; log10 fraction: it doubles the area.
    from autopeft_ray.objectives.pareto import hypervolume

    linear_gain = hypervolume(with_cheap, nadir) / hypervolume(best_only, nadir) - 1
    log_gain = replay.log_hypervolume(with_cheap, nadir) / replay.log_hypervolume(best_only, nadir)
    assert linear_gain == pytest.approx(0.1 * 0.0099 / (0.2 * 0.09), rel=1e-6)
    assert log_gain - 1 == pytest.approx(1.0, rel=1e-6)
    assert replay.log_hypervolume([], nadir) == 0.0


def test_a_seed_replayed_twice_counts_once_at_its_longest_budget() -> None:
    replay = _replay_module()

    def run(name: str, seed: int, budget: int, **extra: Any) -> dict[str, Any]:
        base = {"space": "full", "concurrency": 2, "initial": 10, "table": "t"}
        return {"contestant": name, "seed": seed, "budget": budget, **base, **extra}

    runs = [
        run("autopeft-nuts", 0, 40),  # replayed first, at 40; then the same seed at 80
        run("autopeft-nuts", 1, 40),
        run("autopeft-nuts", 0, 80),
        run("autopeft-nuts", 0, 80, concurrency=4),  # another concurrency: its own
        run("autopeft-nuts", 0, 40, table="older"),  # another table: its own
        run("random", 0, 80),
        run("random", 0, 80, finished="later"),  # a tie: the latest
    ]
    kept = replay.longest_runs(runs)
    assert kept == [runs[1], runs[2], runs[3], runs[4], runs[6]]


def test_ablation_rows_are_candidates_of_the_ablated_spaces_alone_and_findings_compare_them(
    table: tuple[Path, SearchSpace, ParamCost],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, space, cost = table
    replay = _replay_module()
    before = replay.TableProblem(PeftBench(folder), space)
    # The table grows by the ablations: SA alone on every layer (also members of full).
    rows = [{**r, "stage": "space"} for r in pq.read_table(folder / RECORDS_FILE).to_pylist()]
    sa = SearchSpace.from_model_config(DEFAULT_MODEL, "sa")
    for size in (1, 4, 16, 64):
        config = PeftConfiguration(size, 0, 0, (True,) * 6)
        fraction = cost(config)
        rows.append(
            {
                **rows[0],
                "key": configuration_key(config),
                "seed": 0,
                "dev_score": _score(config, fraction, 0) - 0.05,
                "param_fraction": fraction,
                "stage": "ablation",
            }
        )
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / RECORDS_FILE)
    bench = PeftBench(tmp_path)
    assert {r.stage for r in bench.rows} == {"space", "ablation"}
    after = replay.TableProblem(bench, space)
    assert after.keys == before.keys and after.digest == before.digest  # full: unchanged
    assert len(replay.TableProblem(bench, sa).keys) == 4  # sa: the ablation rows
    # Replays of both spaces, then the findings from one reference.
    output = tmp_path / "runs"
    args = replay.parse_args(
        ["--table", str(tmp_path), "--output", str(output), "--seeds", "2", "--budget", "6"]
        + ["--budgets", "6", "--concurrency", "2", "--contestants", "random"]
    )
    for variant in ("sa", "full"):
        args.space = variant
        replay.run_all(args)
    capsys.readouterr()
    replay.findings(args)
    out = capsys.readouterr().out
    nadir = min(r.dev_score for r in bench.rows if r.fidelity == 1)
    assert f"the nadir of their candidates: {nadir:.4f} score" in out
    assert "| sa | 4 |" in out and "| full | 40 |" in out
    [line] = [x for x in out.splitlines() if x.startswith("| random |")]
    # sa's runs used up its 4 candidates: they count at budget 6; full is above on both.
    assert line.endswith("| - | - | - | 2/2 (2) |"), line
