"""The trainable on a real CUDA GPU (marked ``gpu``; skipped, with the reason, without one).

Run them where a GPU is: ``pytest -m gpu tests`` (``scripts/gpu_check.sh`` runs
them and the throughput benchmark in one go).
"""

from __future__ import annotations

import shutil

import pytest
import torch

from autopeft_ray.config import TrainingSettings, trial_config
from autopeft_ray.exceptions import TrialFailedError
from autopeft_ray.objectives import SCORE
from autopeft_ray.space import SearchSpace
from autopeft_ray.tasks import prepare_data
from autopeft_ray.trainables import TrainingRun, run_training

SPACE = SearchSpace(6, 384)
CONFIG = SPACE.configuration(sa_size=8, pa_size=4, pt_length=2, active_layers=[3, 4, 5])

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")
STEPS = 8


@pytest.fixture(scope="module")
def settings(settings) -> TrainingSettings:
    return settings.replace(
        max_steps=STEPS, num_evaluations=2, max_eval_examples=32, learning_rate=1e-3
    )


def trained_parameters(run: TrainingRun) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in run.model.parameters() if p.requires_grad])


@pytest.mark.parametrize("configuration", [CONFIG, "lora"], ids=["configuration", "preset"])
def test_trains_on_cuda(settings, configuration):
    results: list = []
    run = run_training(
        trial_config(configuration, settings), lambda r, f: results.append(r), device=CUDA
    )
    assert all(p.device.type == "cuda" for p in run.model.parameters())
    assert results[-1]["device"].startswith("cuda")
    assert results[-1]["precision"] == ("bf16" if torch.cuda.is_bf16_supported(False) else "fp32")
    assert 0.0 <= results[-1][SCORE] <= 1.0 and results[-1]["train_loss"] > 0


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_stays_close_to_fp32(settings, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no bf16 support")
    data = prepare_data(settings)
    runs = {}
    for name in ("fp32", precision):
        run = TrainingRun(settings.replace(precision=name), CONFIG, data, CUDA)
        before = trained_parameters(run)
        run.train_until(STEPS)
        runs[name] = (trained_parameters(run) - before, run.evaluate()["score"])
    reference, update = runs["fp32"][0], runs[precision][0]
    relative = float((update - reference).norm() / reference.norm())
    # Looser than on the CPU (0.1): GPU kernels round differently, and 8 steps compound it.
    assert relative < 0.2, f"{precision} update differs from fp32's by {relative:.1%}"
    assert abs(runs[precision][1] - runs["fp32"][1]) <= 0.1


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_resume_on_the_gpu_gives_the_same_parameters(settings, tmp_path, precision):
    config = trial_config(CONFIG, settings.replace(precision=precision))
    straight = run_training(config, lambda r, f: None, device=CUDA)

    class Interrupt(Exception):
        pass

    def stop(result, folder):
        shutil.copytree(folder, tmp_path / "checkpoint")
        raise Interrupt

    with pytest.raises(Interrupt):
        run_training(config, stop, device=CUDA)
    resumed = run_training(
        config, lambda r, f: None, restore_from=tmp_path / "checkpoint", device=CUDA
    )
    torch.testing.assert_close(trained_parameters(resumed), trained_parameters(straight))
    assert resumed.precision.scaler.state_dict() == straight.precision.scaler.state_dict()


@pytest.mark.slow
def test_two_trials_share_one_gpu_under_ray(ray_session, settings, tmp_path):
    from ray import tune

    from autopeft_ray.searchers import FixedConfigurations
    from autopeft_ray.trainables import with_resources

    other = SPACE.configuration(sa_size=0, pa_size=16, pt_length=0, active_layers=[0, 5])
    results = tune.Tuner(
        with_resources(cpus=1, gpus=0.5, settings=settings.replace(max_steps=40)),
        tune_config=tune.TuneConfig(
            search_alg=FixedConfigurations([CONFIG.to_dict(), other.to_dict()]),
            num_samples=2,
            max_concurrent_trials=2,
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    ).fit()
    assert results.num_errors == 0 and len(results) == 2
    spans = []
    for result in results:
        assert result.metrics["device"].startswith("cuda")
        assert result.metrics["gpu_memory_fraction"] == 0.5
        end = result.metrics["timestamp"]
        spans.append((end - result.metrics["time_total_s"], end))
    assert max(s for s, _ in spans) < min(e for _, e in spans), f"trials did not overlap: {spans}"


def test_out_of_memory_is_a_clear_trial_error(settings):
    run = TrainingRun(
        settings.replace(batch_size=128, max_length=512), CONFIG, prepare_data(settings), CUDA
    )
    total = torch.cuda.get_device_properties(CUDA).total_memory
    torch.cuda.empty_cache()  # what earlier tests freed would otherwise stay reserved
    # Leave this process a few MiB beyond what it holds: the first training step cannot fit.
    torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_reserved() + 2**22) / total)
    try:
        with pytest.raises(
            TrialFailedError, match=r"out of memory in training step 1 with batch_size 128"
        ):
            run.train_until(1)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
