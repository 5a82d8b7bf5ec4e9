"""The acquisition: qLogNEHVI over (score, -fraction), with BoTorch's fused kernel."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from typing import Any

import torch
from botorch.acquisition.multi_objective.logei import (
    qLogNoisyExpectedHypervolumeImprovement,
)
from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
from botorch.acquisition.multi_objective.utils import prune_inferior_points_multi_objective
from botorch.sampling import IIDNormalSampler, ListSampler
from botorch.sampling.index_sampler import IndexSampler
from torch import Tensor

from .feasibility import failure_constraint
from .model import DTYPE, CanonicalModelList

#: Where the fused kernel is built, one folder per Python environment (``sys.prefix``)
#: unless ``TORCH_EXTENSIONS_DIR`` says otherwise.
KERNEL_BUILD_ROOT = os.path.join("~", ".cache", "autopeft_ray", "torch_extensions")


def kernel_build_dir() -> str:
    """The folder that holds this environment's build of BoTorch's fused kernel.

    PyTorch builds JIT extensions into one folder per name (by default under
    ``~/.cache/torch_extensions``), shared by every environment of the user. The
    build's command holds the environment's include paths, so two environments
    (two checkouts, a virtual environment and CI's) rebuilt the shared kernel for
    each other, 25-50 s of compilation at each switch (BENCHMARKS.md, "BoTorch's
    kernel"). One folder per environment keeps each build. ``TORCH_EXTENSIONS_DIR``,
    when set, is used as it is.
    """
    given = os.environ.get("TORCH_EXTENSIONS_DIR")
    if given:
        return given
    tag = hashlib.sha256(os.path.realpath(sys.prefix).encode()).hexdigest()[:12]
    return os.path.join(os.path.expanduser(KERNEL_BUILD_ROOT), tag)


def load_fused_kernel() -> bool:
    """Load BoTorch's fused qLogNEHVI kernel, JIT-built with this environment's ninja.

    BoTorch builds the kernel on first use with the first ``ninja`` on PATH.
    BoTorch depends on the ``ninja`` package, installed next to this
    interpreter; with another ninja on PATH (the system's), runs with and
    without the environment activated rebuilt the cached kernel for each other,
    nearly a minute each time (BENCHMARKS.md, "The demo"). The environment's
    ninja is put first for this one call, and the kernel is built into
    :func:`kernel_build_dir`. ``scripts/setup.sh`` builds it at install time, so
    that no search pays for it.

    Returns:
        Whether the kernel is loaded (else BoTorch uses its PyTorch code).
    """
    from botorch.acquisition.multi_objective import logei

    load = getattr(logei, "_try_load_fused_kernel", None)
    if load is None or getattr(logei, "_load_attempted", True):
        return getattr(logei, "_C", None) is not None
    saved = {name: os.environ.get(name) for name in ("PATH", "TORCH_EXTENSIONS_DIR")}
    bin_dir = os.path.dirname(sys.executable)
    if os.path.exists(os.path.join(bin_dir, "ninja")):
        os.environ["PATH"] = bin_dir + os.pathsep + (saved["PATH"] or "")
    os.environ["TORCH_EXTENSIONS_DIR"] = kernel_build_dir()
    try:
        load()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return getattr(logei, "_C", None) is not None


def build_acquisition(
    model: CanonicalModelList,
    ref_point: tuple[float, float],
    X_baseline: Tensor,
    X_pending: Tensor | None,
    mc_samples: int,
    seed: int,
    max_baseline: int | None = None,
) -> qLogNoisyExpectedHypervolumeImprovement:
    """qLogNEHVI in the "maximise both" space; ``ref_point`` is ``(score, -fraction)``.

    The sampler is seeded; pending configurations (``X_pending``, running
    trials) are integrated over, so concurrent suggestions differ. BoTorch
    keeps the baseline points with any probability of being Pareto-optimal;
    ``max_baseline`` keeps at most that many, the likeliest (BoTorch's
    ``prune_inferior_points_multi_objective`` with ``max_frac``): each
    acquisition call takes a joint posterior over the kept points, so at
    hundreds of observations this bounds its cost (BENCHMARKS.md).

    A model with a third output, the feasibility model (:mod:`.feasibility`),
    makes it a constrained qLogNEHVI: the objectives are the first two
    outputs, and the third is BoTorch's outcome constraint (feasible at most 0).
    """
    load_fused_kernel()
    ref = torch.tensor(ref_point, dtype=DTYPE)
    X_baseline = X_baseline.to(DTYPE)
    constrained = len(model.models) > 2
    objective = IdentityMCMultiOutputObjective(outcomes=[0, 1]) if constrained else None
    constraints: list[Callable[[Tensor], Tensor]] | None = (
        [failure_constraint] if constrained else None
    )
    if max_baseline is not None and len(X_baseline) > max_baseline:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            X_baseline = prune_inferior_points_multi_objective(
                model,
                X_baseline,
                ref,
                objective=objective,
                constraints=constraints,
                num_samples=512,
                max_frac=max_baseline / len(X_baseline),
            )
    shape = torch.Size([mc_samples])
    samplers: list[Any] = [IIDNormalSampler(shape, seed=seed), IndexSampler(shape, seed=seed)]
    if constrained:  # its own draws: the failure model is independent of the score's
        samplers.append(IIDNormalSampler(shape, seed=seed + 1))
    return qLogNoisyExpectedHypervolumeImprovement(
        model=model,
        ref_point=ref,
        X_baseline=X_baseline,
        sampler=ListSampler(*samplers),
        objective=objective,
        constraints=constraints,
        X_pending=None if X_pending is None or len(X_pending) == 0 else X_pending.to(DTYPE),
        prune_baseline=True,
    )
