"""The training loop of one PEFT configuration, independent of Ray.

A plain PyTorch loop rather than Hugging Face's ``Trainer``: it is what the
throughput benchmark compares against, it resumes bit for bit from a
checkpoint (data order is a function of ``(seed, epoch)``, RNG states are
saved), and it keeps per-step overhead to one optimiser step.
"""

from __future__ import annotations

import math
import time
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
    SCORE,
    TARGET_FIDELITY,
    TRAINABLE_PARAMS,
)
from autopeft_ray.tasks import PreparedData

STATE_FILE = "training_state.pt"


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
        )
        self.model = self.built.model.to(self.device)
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
        self.optimizer = torch.optim.AdamW(
            [{"params": params, "lr": rates[group]} for group, params in groups.items()],
            weight_decay=self.settings.weight_decay,
        )
        self.total_steps = self.settings.total_steps(len(self.data.train))
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, round(self.settings.warmup_ratio * self.total_steps), self.total_steps
        )
        self.steps_per_epoch = max(1, math.ceil(len(self.data.train) / self.settings.batch_size))
        self.step = 0
        self.best_score = -math.inf
        self.train_time = 0.0
        self.train_samples = 0
        self.loss_sum = 0.0
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
        batch = self.data.collator(self.data.train[rows])
        return {k: v.to(self.device) for k, v in batch.items()}

    def train_until(self, target_step: int) -> None:
        """Run optimiser steps until ``self.step == target_step``."""
        self.model.train()
        while self.step < target_step:
            batch = self._batch(self.step)
            start = time.perf_counter()
            try:
                loss = self.model(**batch).loss
                if not torch.isfinite(loss):
                    raise TrialFailedError(
                        f"the training loss became {loss.item()} at step {self.step + 1} with "
                        f"learning rates {self._rates()} for {self._describe()}. Lower "
                        f"`learning_rate` (or `module_learning_rates`), or check the labels "
                        f"of task {self.data.task.name!r}."
                    )
                loss.backward()
                if self.settings.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(self._trained, self.settings.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            except torch.OutOfMemoryError as exc:
                raise TrialFailedError(
                    f"out of memory at step {self.step + 1} with batch size "
                    f"{self.settings.batch_size} for {self._describe()}. Lower `batch_size` or "
                    f"`max_length`, or grant the trial more GPU memory."
                ) from exc
            self.train_time += time.perf_counter() - start
            self.train_samples += int(batch["input_ids"].shape[0])
            self.loss_sum += float(loss.detach())
            self.loss_count += 1
            self.step += 1

    @torch.inference_mode()
    def evaluate(self, split: str = "validation") -> dict[str, float]:
        """Task metrics on a split (``score`` is the task's main metric)."""
        import numpy as np

        from autopeft_ray.tasks import compute_metrics

        dataset = getattr(self.data, split)
        self.model.eval()
        predictions, labels = [], []
        size = self.settings.eval_batch_size
        for start in range(0, len(dataset), size):
            rows = dataset[start : start + size]
            batch = {k: v.to(self.device) for k, v in self.data.collator(rows).items()}
            logits = self.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
            predictions.append(logits.float().cpu().numpy())
            labels.append(batch["labels"].cpu().numpy())
        logits_all = np.concatenate(predictions)
        preds = logits_all[:, 0] if self.data.task.is_regression else logits_all.argmax(-1)
        return compute_metrics(self.data.task, preds, np.concatenate(labels))

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
            "train_loss": self.loss_sum / max(1, self.loss_count),
            "train_samples_per_second": self.train_samples / max(self.train_time, 1e-9),
            "learning_rates": dict(self.learning_rates),
        }
        out.update({METRIC_PREFIX + k: float(v) for k, v in metrics.items() if k != "score"})
        self.loss_sum, self.loss_count = 0.0, 0
        return out

    def _rates(self) -> str:
        return ", ".join(f"{group} {rate:g}" for group, rate in self.learning_rates.items())

    def _describe(self) -> str:
        if isinstance(self.configuration, str):
            return f"preset {self.configuration!r}"
        return str(self.configuration.describe())

    # -- checkpoints: trained parameters only (adapters + head), optimiser, scheduler, RNG
    def save(self, folder: str | Path) -> None:
        trained = {n: p.detach().cpu() for n, p in self.model.named_parameters() if p.requires_grad}
        state = {
            "params": trained,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "best_score": self.best_score,
            "rng": torch.get_rng_state(),
        }
        torch.save(state, Path(folder) / STATE_FILE)

    def load(self, folder: str | Path) -> None:
        state = torch.load(Path(folder) / STATE_FILE, weights_only=True)
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
