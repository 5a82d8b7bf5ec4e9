"""Precision, device placement and out-of-memory handling, on the CPU (the GPU twins: test_gpu.py).

CPU autocast runs bf16 and fp16 for real (slowly: this CPU has no bf16 or fp16
units), so the precision paths, the gradient scaler and its checkpoint are
exercised here on every run, not only on a GPU.
"""

from __future__ import annotations

import pytest
import torch

from autopeft_ray.config import TrainingSettings, trial_config
from autopeft_ray.exceptions import ConfigurationError, TrialFailedError
from autopeft_ray.space import SearchSpace
from autopeft_ray.tasks import prepare_data
from autopeft_ray.trainables import Precision, TrainingRun, granted_resources, run_training
from autopeft_ray.trainables.device import memory_fraction, resolve_precision, share_gpu, to_device

SPACE = SearchSpace(6, 384)
CONFIG = SPACE.configuration(sa_size=8, pa_size=4, pt_length=2, active_layers=[3, 4, 5])

CPU = torch.device("cpu")
STEPS = 4


@pytest.fixture(scope="module")
def settings(settings) -> TrainingSettings:
    # learning rate 1e-3: large enough that 4 steps move the weights measurably
    return settings.replace(max_length=32, max_steps=STEPS, num_evaluations=1, learning_rate=1e-3)


def trained_parameters(run: TrainingRun) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in run.model.parameters() if p.requires_grad])


@pytest.fixture(scope="module")
def data(settings):
    return prepare_data(settings)


@pytest.fixture(scope="module")
def fp32_update(settings, data) -> tuple[torch.Tensor, torch.Tensor]:
    """The trained parameters before and after STEPS fp32 steps."""
    run = TrainingRun(settings.replace(precision="fp32"), CONFIG, data)
    before = trained_parameters(run)
    run.train_until(STEPS)
    return before, trained_parameters(run)


def test_auto_is_fp32_on_a_cpu_and_named_precisions_are_kept():
    assert resolve_precision("auto", CPU) == "fp32"
    for name in ("fp32", "bf16", "fp16"):
        assert resolve_precision(name, CPU) == name
    assert Precision("fp16", CPU).scaler.is_enabled()
    assert not Precision("bf16", CPU).scaler.is_enabled()


def test_unknown_precision_is_refused_naming_the_field():
    with pytest.raises(ConfigurationError, match=r"`precision` should be one of .*'bf16'.*'fp8'"):
        TrainingSettings(precision="fp8")
    with pytest.raises(ConfigurationError, match=r"`precision` should be one of"):
        resolve_precision("half", CPU)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_close_to_fp32(settings, data, fp32_update, precision):
    before, after_fp32 = fp32_update
    run = TrainingRun(settings.replace(precision=precision), CONFIG, data)
    torch.testing.assert_close(
        trained_parameters(run), before, msg="same seed, same initial weights"
    )
    run.train_until(STEPS)
    result = run.result(run.evaluate())
    assert result["precision"] == precision
    assert all(p.dtype == torch.float32 for p in run.model.parameters()), "weights stay fp32"
    update, reference = trained_parameters(run) - before, after_fp32 - before
    assert reference.norm() > 1e-2, "the fp32 run must move the weights for this to mean much"
    relative = float((update - reference).norm() / reference.norm())
    assert relative < 0.1, f"{precision} update differs from fp32's by {relative:.1%}"


def test_evaluation_runs_under_the_same_autocast(settings, data):
    dtypes: list[torch.dtype] = []
    for precision in ("fp32", "bf16"):
        run = TrainingRun(settings.replace(precision=precision), CONFIG, data)
        layer = run.model.base_model.encoder.layer[0].attention.self.query
        handle = layer.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
        metrics = run.evaluate()
        handle.remove()
        assert 0.0 <= metrics["score"] <= 1.0
    assert set(dtypes[: len(dtypes) // 2]) == {torch.float32}
    assert set(dtypes[len(dtypes) // 2 :]) == {torch.bfloat16}


def test_fp16_resume_restores_the_loss_scale_and_continues_exactly(settings, tmp_path):
    # CPU fp16 is emulated (4 s a step at batch 8 x 32 tokens): a smaller batch, 2 steps.
    fp16 = settings.replace(
        precision="fp16", max_length=16, batch_size=4, max_steps=2, num_evaluations=2
    )
    config = trial_config(CONFIG, fp16)
    straight = run_training(config, lambda r, f: None)

    class Interrupt(Exception):
        pass

    saved = tmp_path / "checkpoint"

    def stop_after_first(result, folder):
        import shutil

        shutil.copytree(folder, saved)
        raise Interrupt

    with pytest.raises(Interrupt):
        run_training(config, stop_after_first)
    state = torch.load(saved / "training_state.pt", weights_only=True)
    assert state["precision"] == "fp16"
    assert state["scaler"]["_growth_tracker"] == 1, "the scaler counted its step"
    resumed = run_training(config, lambda r, f: None, restore_from=saved)
    assert resumed.precision.scaler.state_dict() == straight.precision.scaler.state_dict()
    torch.testing.assert_close(
        trained_parameters(resumed), trained_parameters(straight), rtol=0, atol=0
    )


def test_out_of_memory_becomes_a_trial_error_with_the_fix(settings, data, monkeypatch):
    run = TrainingRun(settings, CONFIG, data)

    def exhausted(*args, **kwargs):
        # What the CUDA caching allocator raises; the CPU has no allocator limit to hit.
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(run.model, "forward", exhausted)
    with pytest.raises(
        TrialFailedError, match=r"out of memory in training step 1 with batch_size 8"
    ):
        run.train_until(1)
    with pytest.raises(
        TrialFailedError, match=r"evaluation on validation with eval_batch_size 64 .*Lower"
    ):
        run.evaluate()


def test_devices_and_shares_outside_ray():
    granted = granted_resources()
    assert granted.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert granted.threads >= 1
    assert [memory_fraction(g) for g in (0.0, 0.25, 0.5, 1.0, 2.0)] == [None, 0.25, 0.5, None, None]
    assert share_gpu(CPU, 0.5) is None, "a CPU trial has no GPU memory to cap"
    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long)}
    moved = to_device(batch, CPU)
    assert moved["input_ids"] is batch["input_ids"]
