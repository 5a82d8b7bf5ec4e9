"""Training throughput of the trainable's loop against a bare PyTorch loop (and HF Trainer).

Same model, configuration, data, batch size and threads for all three; the
contestants run interleaved (A B C A B C ...) so machine noise hits them alike,
and the figure reported is the median over repetitions. Also reports the time
from trial start to the first training step (data from the Arrow cache + model
build), outside Ray and inside a real Ray Tune trial.

    python benchmarks/trainable_throughput.py            # full (about 6 minutes on 2 cores)
    python benchmarks/trainable_throughput.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402

from autopeft_ray.builder import build_peft_model  # noqa: E402
from autopeft_ray.config import TrainingSettings, trial_config  # noqa: E402
from autopeft_ray.space import SearchSpace  # noqa: E402
from autopeft_ray.tasks import prepare_data  # noqa: E402
from autopeft_ray.trainables import TrainingRun, run_training  # noqa: E402

CONFIG = SearchSpace(6, 384).configuration(sa_size=64, pa_size=64, pt_length=16)


def bare_loop(settings: TrainingSettings, data, steps: int) -> float:
    """Samples/s of the plainest loop: DataLoader + dynamic padding + AdamW."""
    built = build_peft_model(settings.model, CONFIG, num_labels=2, seed=settings.seed)
    model = built.model
    model.train()
    loader = torch.utils.data.DataLoader(
        data.train,
        batch_size=settings.batch_size,
        shuffle=True,
        collate_fn=data.collator,
        generator=torch.Generator().manual_seed(0),
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    it = iter(loader)
    samples, elapsed = 0, 0.0
    for _ in range(steps):
        start = time.perf_counter()
        batch = next(it)
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        elapsed += time.perf_counter() - start
        samples += batch["input_ids"].shape[0]
    return samples / elapsed


def trainable_loop(settings: TrainingSettings, data, steps: int) -> float:
    """Samples/s of the trainable's TrainingRun, timed from outside (batching included)."""
    run = TrainingRun(settings.replace(max_steps=steps), CONFIG, data)
    start = time.perf_counter()
    run.train_until(steps)
    return run.train_samples / (time.perf_counter() - start)


def hf_trainer(settings: TrainingSettings, data, steps: int) -> float:
    """Samples/s of transformers' Trainer on the same model and data."""
    import tempfile

    from transformers import Trainer, TrainingArguments

    built = build_peft_model(settings.model, CONFIG, num_labels=2, seed=settings.seed)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=settings.batch_size,
            max_steps=steps,
            learning_rate=1e-4,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            dataloader_num_workers=0,
            disable_tqdm=True,
            use_cpu=True,
        )
        trainer = Trainer(
            model=built.model, args=args, train_dataset=data.train, data_collator=data.collator
        )
        result = trainer.train()
    return steps * settings.batch_size / result.metrics["train_runtime"]


def time_to_first_step_in_ray(settings: TrainingSettings) -> float:
    import ray
    from ray import tune

    from autopeft_ray.searchers import FixedConfigurations
    from autopeft_ray.trainables import with_resources

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    start = time.time()
    results = tune.Tuner(
        with_resources(cpus=2),
        tune_config=tune.TuneConfig(
            search_alg=FixedConfigurations([trial_config(CONFIG, settings.replace(max_steps=1))]),
            num_samples=1,
        ),
        run_config=tune.RunConfig(verbose=0),
    ).fit()
    metrics = results[0].metrics
    ray.shutdown()
    return float(metrics["seconds_to_first_step"]), time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = 3, 1
    torch.set_num_threads(2)
    settings = TrainingSettings(task="rotten_tomatoes", max_length=args.max_length, batch_size=32)
    data = prepare_data(settings)

    figures: dict[str, list[float]] = {"bare": [], "trainable": [], "hf_trainer": []}
    for _ in range(args.repeats):
        figures["bare"].append(bare_loop(settings, data, args.steps))
        figures["trainable"].append(trainable_loop(settings, data, args.steps))
        figures["hf_trainer"].append(hf_trainer(settings, data, args.steps))
    median = {k: statistics.median(v) for k, v in figures.items()}

    results: list = []
    start = time.perf_counter()
    run_training(
        trial_config(CONFIG, settings.replace(max_steps=1, max_eval_examples=32)),
        lambda r, f: results.append(r),
    )
    first_step = results[0]["seconds_to_first_step"]

    print(
        f"# trainable throughput ({CONFIG.describe()}, MiniLM-L6, Rotten Tomatoes, "
        f"seq {args.max_length}, batch 32, 2 threads, {args.steps} steps x {args.repeats})"
    )
    print("| loop | train samples/s (median) | runs |")
    print("|---|---|---|")
    for name, values in figures.items():
        print(f"| {name} | {median[name]:.1f} | {', '.join(f'{v:.1f}' for v in values)} |")
    print(
        f"\nratio trainable / bare:  {median['trainable'] / median['bare']:.3f}  (target >= 0.95)"
    )
    print(f"ratio hf_trainer / bare: {median['hf_trainer'] / median['bare']:.3f}")
    print(
        f"start to first training step, no Ray (cached data + model build): {first_step:.2f} s "
        f"(whole call {time.perf_counter() - start:.1f} s)"
    )
    if not args.no_ray:
        in_trial, whole = time_to_first_step_in_ray(settings)
        print(
            f"start to first training step inside a Ray Tune trial: {in_trial:.2f} s "
            f"(Tuner.fit of a 1-step trial, Ray already started: {whole:.1f} s)"
        )
    print(f"\nreproduce: python {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
