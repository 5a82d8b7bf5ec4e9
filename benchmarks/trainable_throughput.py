"""Training throughput of the trainable's loop against a bare PyTorch loop (and HF Trainer).

Same model, configuration, data, batch size, threads, device and precision
for all three; the contestants run interleaved (A B C A B C ...) so machine
noise hits them alike, and the figure reported is the median over repetitions.
With several precisions, each gets its own three contestants (fp32 vs bf16
samples/s on a GPU). Also reports the time from trial start to the first
training step (data from the Arrow cache + model build), outside Ray and
inside a real Ray Tune trial.

    python benchmarks/trainable_throughput.py            # full (about 6 minutes on 2 cores)
    python benchmarks/trainable_throughput.py --quick    # smoke run
    python benchmarks/trainable_throughput.py --device cuda --precisions fp32,bf16  # a GPU
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
from autopeft_ray.trainables import Precision, TrainingRun, run_training  # noqa: E402
from autopeft_ray.trainables.device import resolve_precision  # noqa: E402

CONFIG = SearchSpace(6, 384).configuration(sa_size=64, pa_size=64, pt_length=16)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(settings: TrainingSettings, data, steps: int, device: torch.device) -> float:
    """Samples/s of the plainest loop: DataLoader + dynamic padding + AdamW (+ autocast)."""
    precision = Precision(settings.precision, device)
    built = build_peft_model(settings.model, CONFIG, num_labels=2, seed=settings.seed)
    model = built.model.to(device)
    model.train()
    loader = torch.utils.data.DataLoader(
        data.train,
        batch_size=settings.batch_size,
        shuffle=True,
        collate_fn=data.collator,
        generator=torch.Generator().manual_seed(0),
        pin_memory=device.type == "cuda",
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    scaler = precision.scaler
    it = iter(loader)
    samples = 0
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        batch = {k: v.to(device, non_blocking=True) for k, v in next(it).items()}
        with precision.autocast():
            loss = model(**batch).loss
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        samples += batch["input_ids"].shape[0]
    _synchronize(device)
    return samples / (time.perf_counter() - start)


def trainable_loop(settings: TrainingSettings, data, steps: int, device: torch.device) -> float:
    """Samples/s of the trainable's TrainingRun, timed from outside (batching included)."""
    run = TrainingRun(settings.replace(max_steps=steps), CONFIG, data, device)
    _synchronize(device)
    start = time.perf_counter()
    run.train_until(steps)  # ends with a synchronize on a GPU
    return run.train_samples / (time.perf_counter() - start)


def hf_trainer(settings: TrainingSettings, data, steps: int, device: torch.device) -> float:
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
            use_cpu=device.type == "cpu",
            bf16=settings.precision == "bf16",
            fp16=settings.precision == "fp16",
        )
        trainer = Trainer(
            model=built.model, args=args, train_dataset=data.train, data_collator=data.collator
        )
        result = trainer.train()
    return steps * settings.batch_size / result.metrics["train_runtime"]


def time_to_first_step_in_ray(settings: TrainingSettings, device: torch.device) -> float:
    import ray
    from ray import tune

    from autopeft_ray.searchers import FixedConfigurations
    from autopeft_ray.trainables import with_resources

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    start = time.time()
    results = tune.Tuner(
        with_resources(cpus=2, gpus=int(device.type == "cuda")),
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
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda if present"
    )
    parser.add_argument(
        "--precisions",
        default=None,
        help="comma-separated, from fp32,bf16,fp16 (default: fp32, and bf16 on a GPU with it)",
    )
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = 3, 1
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    precisions = (
        args.precisions.split(",")
        if args.precisions
        else sorted({"fp32", resolve_precision("auto", device)}, reverse=True)
    )
    torch.set_num_threads(2)
    settings = TrainingSettings(
        task="rotten_tomatoes", max_length=args.max_length, batch_size=args.batch_size
    )
    data = prepare_data(settings)

    loops = {"bare": bare_loop, "trainable": trainable_loop, "hf_trainer": hf_trainer}
    figures: dict[tuple[str, str], list[float]] = {
        (precision, name): [] for precision in precisions for name in loops
    }
    for _ in range(args.repeats):
        for precision in precisions:
            for name, loop in loops.items():
                figures[precision, name].append(
                    loop(settings.replace(precision=precision), data, args.steps, device)
                )
    median = {k: statistics.median(v) for k, v in figures.items()}

    results: list = []
    start = time.perf_counter()
    run_training(
        trial_config(CONFIG, settings.replace(max_steps=1, max_eval_examples=32)),
        lambda r, f: results.append(r),
    )
    first_step = results[0]["seconds_to_first_step"]

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU, 2 threads"
    print(
        f"# trainable throughput ({CONFIG.describe()}, MiniLM-L6, Rotten Tomatoes, "
        f"seq {args.max_length}, batch {args.batch_size}, {where}, "
        f"{args.steps} steps x {args.repeats})"
    )
    print("| precision | loop | train samples/s (median) | runs |")
    print("|---|---|---|---|")
    for (precision, name), values in figures.items():
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {precision} | {name} | {median[precision, name]:.1f} | {runs} |")
    print()
    for precision in precisions:
        bare = median[precision, "bare"]
        print(
            f"{precision}: ratio trainable / bare {median[precision, 'trainable'] / bare:.3f} "
            f"(target >= 0.95), hf_trainer / bare {median[precision, 'hf_trainer'] / bare:.3f}"
        )
    for precision in precisions[1:]:
        ratio = median[precision, "trainable"] / median[precisions[0], "trainable"]
        print(f"trainable {precision} / {precisions[0]}: {ratio:.2f}x samples/s")
    print(
        f"start to first training step, no Ray (cached data + model build): {first_step:.2f} s "
        f"(whole call {time.perf_counter() - start:.1f} s)"
    )
    if not args.no_ray:
        in_trial, whole = time_to_first_step_in_ray(settings, device)
        print(
            f"start to first training step inside a Ray Tune trial: {in_trial:.2f} s "
            f"(Tuner.fit of a 1-step trial, Ray already started: {whole:.1f} s)"
        )
    print(f"\nreproduce: python {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
