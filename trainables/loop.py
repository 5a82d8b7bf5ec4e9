"""The training loop of one PEFT configuration, independent of Ray.

A plain PyTorch loop rather than Hugging Face's ``Trainer``: it is what the
throughput benchmark compares against, it resumes bit for bit from a
checkpoint (data order is a function of ``(seed, epoch)``, RNG states are
saved), and it keeps per-step overhead to one optimiser step.

The same loop trains a sequence classifier or a causal LM (the task's
``kind``). A causal LM's dev score comes from its target tokens
(:func:`autopeft_ray.tasks.metrics.causal_lm_metrics`); its head-only model
trains nothing (the language-model head is pretrained and frozen), so its
steps only measure the loss and its score is the base model's.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from autopeft_ray.config import PRESET_KEY, TRIAL_SETTINGS_KEY, TrainingSettings
from autopeft_ray.exceptions import TrialFailedError, UnsupportedError
from autopeft_ray.objectives import (
    BEST_SCORE,
    FIDELITY,
    METRIC_PREFIX,
    PARAM_FRACTION,
    PEAK_MEMORY,
    SCORE,
    TARGET_FIDELITY,
    TRAINABLE_PARAMS,
)
from autopeft_ray.tasks import PreparedData

from .device import Precision, peak_memory_gib, to_device

STATE_FILE = "training_state.pt"
#: Optimiser steps between two checks that the training loss is finite on a GPU: each
#: check waits for the GPU, so checking every step would cost throughput (on a CPU,
#: where nothing runs ahead, every step is checked).
GPU_LOSS_CHECK_EVERY = 16


def configuration_from_trial(config: dict[str, Any]) -> Any:
    """The PEFT configuration (or preset name) in a Ray Tune trial config."""
    from autopeft_ray.space import PeftConfiguration

    if PRESET_KEY in config:
        return str(config[PRESET_KEY])
    return PeftConfiguration.from_dict({k: v for k, v in config.items() if k != TRIAL_SETTINGS_KEY})


@dataclass
class TrainingRun:
    """One configuration being trained: model, optimiser, data order and history."""

    settings: TrainingSettings
    configuration: Any
    data: PreparedData
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        from transformers import get_linear_schedule_with_warmup

        from autopeft_ray.builder import (
            FULL,
            build_peft_model,
            parameter_groups,
            task_head_parameters,
        )
        from autopeft_ray.config.learning_rates import group_rates

        task = self.data.task
        self.built = build_peft_model(
            self.settings.model,
            self.configuration,
            num_labels=task.num_labels,
            problem_type="regression" if task.is_regression else None,
            seed=self.settings.seed,
            kind=task.kind,
        )
        with self._out_of_memory("moving the model to the device"):
            self.model = self.built.model.to(self.device)
        #: Autocast and fp16 gradient scaling (``settings.precision`` on this device).
        self.precision = Precision(self.settings.precision, self.device)
        groups = parameter_groups(self.model, task_head_parameters(self.model))
        rates = group_rates(
            self.settings.learning_rate_policy,
            full=self.built.setup["composition"] == FULL,
            single=self.settings.learning_rate,
            overrides=self.settings.module_learning_rates,
        )
        unknown = set(groups) - set(rates)
        if unknown:  # base weights training beside PEFT modules: a builder bug
            raise UnsupportedError(
                f"parameters of group(s) {sorted(unknown)} train in {self._describe()}, which "
                f"the learning-rate policy does not expect. Report this."
            )
        #: The learning rate of each group that trains (``autopeft_ray.config.learning_rates``).
        self.learning_rates = {group: rates[group] for group in groups}
        self._trained = [p for params in groups.values() for p in params]
        # A causal LM's head-only model trains nothing; an empty group keeps the optimiser,
        # the schedule and the checkpoint the same as for every other model.
        param_groups = [
            {"params": params, "lr": rates[group]} for group, params in groups.items()
        ] or [{"params": [], "lr": 0.0}]
        self.optimizer = torch.optim.AdamW(param_groups, weight_decay=self.settings.weight_decay)
        self.total_steps = self.settings.total_steps(len(self.data.train))
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, round(self.settings.warmup_ratio * self.total_steps), self.total_steps
        )
        self.steps_per_epoch = max(1, math.ceil(len(self.data.train) / self.settings.batch_size))
        self.step = 0
        self.best_score = -math.inf
        self.train_time = 0.0
        self.train_samples = 0
        # The running loss stays on the device: reading it each step would wait for a GPU.
        self._loss_sum = torch.zeros((), device=self.device)
        self.loss_count = 0
        self._order: list[int] = []
        self._order_epoch = -1
        torch.manual_seed(self.settings.seed)

    # -- data order: a function of (seed, epoch), so a resumed run sees the same batches
    def _batch(self, step: int) -> dict[str, torch.Tensor]:
        epoch, index = divmod(step, self.steps_per_epoch)
        if self._order_epoch != epoch:
            generator = torch.Generator().manual_seed(self.settings.seed * 100_003 + epoch)
            self._order = torch.randperm(len(self.data.train), generator=generator).tolist()
            self._order_epoch = epoch
        size = self.settings.batch_size
        rows = self._order[index * size : (index + 1) * size]
        # dataset[rows] gives a dict of columns, which the padding collator takes as is.
        return to_device(self.data.collator(self.data.train[rows]), self.device)

    def train_until(self, target_step: int) -> None:
        """Run optimiser steps until ``self.step == target_step``."""
        self.model.train()
        check_every = 1 if self.device.type == "cpu" else GPU_LOSS_CHECK_EVERY
        checked = self.step
        start = time.perf_counter()
        while self.step < target_step:
            batch = self._batch(self.step)
            with self._out_of_memory(f"training step {self.step + 1}", "batch_size"):
                self._optimizer_step(batch)
            self.train_samples += int(batch["input_ids"].shape[0])
            self.loss_count += 1
            self.step += 1
            if self.step - checked >= check_every or self.step == target_step:
                self._check_loss(checked + 1, self.step)
                checked = self.step
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the time below is the GPU's, not the launches'
        self.train_time += time.perf_counter() - start

    def _optimizer_step(self, batch: dict[str, torch.Tensor]) -> None:
        scaler = self.precision.scaler
        with self.precision.autocast():
            loss = self.model(**batch).loss
        self._last_loss = loss.detach()
        self._loss_sum += self._last_loss.float()
        if not self._trained:  # nothing to update: the loss is only reported
            self.optimizer.step()  # a no-op, in the order the scheduler expects
            self.scheduler.step()
            return
        scaler.scale(loss).backward()
        if self.settings.max_grad_norm is not None:
            scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(self._trained, self.settings.max_grad_norm)
        scaler.step(self.optimizer)  # an fp16 step with inf/nan gradients is skipped
        scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _check_loss(self, first: int, last: int) -> None:
        """Fail the trial if the loss of steps ``first..last`` was not finite."""
        if bool(torch.isfinite(self._loss_sum)):
            return
        where = f"at step {last}" if first == last else f"between steps {first} and {last}"
        raise TrialFailedError(
            f"the training loss became {self._last_loss.item()} {where} with learning rates "
            f"{self._rates()} in {self.precision.name} for {self._describe()}. Lower "
            f"`learning_rate` (or `module_learning_rates`), train in fp32 or bf16 if this was "
            f"fp16, or check the labels of task {self.data.task.name!r}."
        )

    @contextlib.contextmanager
    def _out_of_memory(self, what: str, size_field: str | None = None) -> Iterator[None]:
        """Turn an out-of-memory error into a trial error that says what to change."""
        try:
            yield
        except torch.OutOfMemoryError as exc:
            more = "grant the trial more GPU memory (a larger --gpus-per-trial)"
            if size_field is None:  # the weights alone do not fit
                where, fix = "", f"Use a smaller model, or {more}."
            else:
                where = f" with {size_field} {getattr(self.settings, size_field)}"
                fix = (
                    f"Lower `{size_field}` or `max_length`, train in bf16 or fp16 "
                    f"(--precision) on a GPU, or {more}."
                )
            raise TrialFailedError(
                f"out of memory in {what}{where} on {self.device} for {self._describe()}. {fix}"
            ) from exc

    @torch.inference_mode()
    def evaluate(self, split: str = "validation") -> dict[str, float]:
        """Task metrics on a split (``score`` is the task's main metric)."""
        import numpy as np

        from autopeft_ray.tasks import compute_metrics

        if self.data.task.is_causal_lm:
            return self._evaluate_causal_lm(split)
        dataset = getattr(self.data, split)
        self.model.eval()
        predictions, labels = [], []
        size = self.settings.eval_batch_size
        for start in range(0, len(dataset), size):
            batch = to_device(self.data.collator(dataset[start : start + size]), self.device)
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            out_of_memory = self._out_of_memory(f"evaluation on {split}", "eval_batch_size")
            with out_of_memory, self.precision.autocast():
                logits = self.model(**inputs).logits
            predictions.append(logits.float().cpu().numpy())
            labels.append(batch["labels"].cpu().numpy())
        logits_all = np.concatenate(predictions)
        preds = logits_all[:, 0] if self.data.task.is_regression else logits_all.argmax(-1)
        return compute_metrics(self.data.task, preds, np.concatenate(labels))

    def _evaluate_causal_lm(self, split: str) -> dict[str, float]:
        """Next-token accuracy and loss over a split's target tokens, summed batch by batch."""
        from autopeft_ray.tasks.metrics import causal_lm_metrics
        from autopeft_ray.tasks.tokenization import IGNORE_INDEX

        dataset = getattr(self.data, split)
        self.model.eval()
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # correct, tokens, loss
        size = self.settings.eval_batch_size
        for start in range(0, len(dataset), size):
            batch = to_device(self.data.collator(dataset[start : start + size]), self.device)
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            out_of_memory = self._out_of_memory(f"evaluation on {split}", "eval_batch_size")
            with out_of_memory, self.precision.autocast():
                logits = self.model(**inputs).logits
            # Position t predicts token t + 1, as in training.
            logits, targets = logits[:, :-1].float(), batch["labels"][:, 1:]
            scored = targets != IGNORE_INDEX
            loss = torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="sum"
            )
            correct = ((logits.argmax(-1) == targets) & scored).sum()
            sums += torch.stack([correct.double(), scored.sum().double(), loss.double()])
        correct, tokens, loss_sum = sums.tolist()
        return causal_lm_metrics(self.data.task, correct=correct, tokens=tokens, loss_sum=loss_sum)

    def result(self, metrics: dict[str, float]) -> dict[str, Any]:
        """The dict reported to Ray Tune after an evaluation."""
        score = float(metrics["score"])
        self.best_score = max(self.best_score, score)
        out: dict[str, Any] = {
            SCORE: score,
            BEST_SCORE: self.best_score,
            PARAM_FRACTION: self.built.param_fraction,
            TRAINABLE_PARAMS: self.built.trainable_params,
            FIDELITY: self.step,
            TARGET_FIDELITY: self.total_steps,
            "epoch": self.step / self.steps_per_epoch,
            "train_loss": float(self._loss_sum) / max(1, self.loss_count),
            "train_samples_per_second": self.train_samples / max(self.train_time, 1e-9),
            "learning_rates": dict(self.learning_rates),
            "precision": self.precision.name,
            PEAK_MEMORY: peak_memory_gib(self.device),
        }
        out.update({METRIC_PREFIX + k: float(v) for k, v in metrics.items() if k != "score"})
        self._loss_sum.zero_()
        self.loss_count = 0
        return out

    def _rates(self) -> str:
        return ", ".join(f"{group} {rate:g}" for group, rate in self.learning_rates.items())

    def _describe(self) -> str:
        if isinstance(self.configuration, str):
            return f"preset {self.configuration!r}"
        return str(self.configuration.describe())

    # -- checkpoints: trained parameters only (adapters + head), optimiser, scheduler, RNGs,
    # and the fp16 loss scale, so that a resumed trial continues exactly
    def save(self, folder: str | Path) -> None:
        trained = {n: p.detach().cpu() for n, p in self.model.named_parameters() if p.requires_grad}
        state = {
            "params": trained,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "best_score": self.best_score,
            "rng": torch.get_rng_state(),
            "precision": self.precision.name,
            "scaler": self.precision.scaler.state_dict(),  # empty unless fp16
        }
        if self.device.type == "cuda":  # dropout on a GPU draws from the GPU's generator
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        torch.save(state, Path(folder) / STATE_FILE)

    def load(self, folder: str | Path) -> None:
        # On the CPU first: a checkpoint written on a GPU may resume on another device.
        state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
        missing = self.model.load_state_dict(state["params"], strict=False)
        if missing.unexpected_keys:
            raise TrialFailedError(
                f"checkpoint {folder} holds parameters this model lacks: "
                f"{missing.unexpected_keys[:3]}. It was written for another configuration."
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.best_score = float(state["best_score"])
        torch.set_rng_state(state["rng"])
        if state.get("scaler") and self.precision.scaler.is_enabled():
            self.precision.scaler.load_state_dict(state["scaler"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
