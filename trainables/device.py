"""Where a trial trains: the device Ray granted, its share of a GPU, its precision.

Ray grants a trial CPUs and a (possibly fractional) number of GPUs and sets
``CUDA_VISIBLE_DEVICES``, but it does not stop two trials on one GPU from
taking all its memory: :func:`share_gpu` caps this process at its share
(``torch.cuda.set_per_process_memory_fraction``), so ``--gpus-per-trial 0.5``
runs two trials side by side without one starving the other.

:class:`Precision` is the trial's mixed precision: ``torch.autocast`` around
the forward passes of training and evaluation (the weights and the optimiser
stay in float32), and for fp16 a ``torch.amp.GradScaler``, whose state the
checkpoint keeps so that a resumed trial continues exactly.

:func:`peak_memory_gib` is the memory a trial reports: on a GPU, the most the
trial's tensors held at once (``torch.cuda.max_memory_allocated``, counted from
the trial's start, :func:`reset_peak_memory`); on a CPU, the trial process's
peak resident set (``getrusage(RUSAGE_SELF).ru_maxrss``: Python, torch, the
model and the data together, the whole life of the process).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch

from autopeft_ray.config import PRECISIONS
from autopeft_ray.exceptions import TrialFailedError, invalid_value

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Granted:
    """What Ray granted this trial (or what this process has, outside Ray)."""

    device: torch.device
    threads: int
    #: GPUs granted: a fraction below 1 means the GPU is shared with other trials.
    gpus: float = 0.0


def granted_resources() -> Granted:
    """The device, thread count and GPU share matching what Ray granted this trial."""
    cuda = torch.cuda.is_available()
    try:
        import ray

        if ray.is_initialized():
            granted = ray.get_runtime_context().get_assigned_resources()
            cpus = max(1, int(granted.get("CPU", 1)))
            gpus = float(granted.get("GPU", 0.0))
            device = torch.device("cuda" if gpus > 0 and cuda else "cpu")
            return Granted(device, cpus, gpus if device.type == "cuda" else 0.0)
    except Exception:  # outside a Ray worker: fall back to this process's view
        pass
    return Granted(torch.device("cuda" if cuda else "cpu"), torch.get_num_threads(), float(cuda))


def memory_fraction(gpus: float) -> float | None:
    """The share of one GPU's memory a trial granted ``gpus`` GPUs may use (None: no cap)."""
    return gpus if 0 < gpus < 1 else None


def share_gpu(device: torch.device, gpus: float) -> float | None:
    """Cap this process at its share of ``device``'s memory; the fraction set, or None."""
    fraction = memory_fraction(gpus)
    if device.type != "cuda" or fraction is None:
        return None
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction


def reset_peak_memory(device: torch.device) -> None:
    """Start counting a GPU's peak memory anew (at a trial's start); nothing on a CPU."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float:
    """Peak memory in GiB: the GPU's allocated peak, or this process's resident peak on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


def to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Move a batch to ``device``: through pinned memory, without blocking, to a GPU."""
    if device.type != "cuda":
        return {k: v.to(device) for k, v in batch.items()}
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}


def resolve_precision(requested: str, device: torch.device) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for ``requested`` (or ``auto``) on ``device``.

    ``auto`` is bf16 on a GPU that supports it and fp32 otherwise (on a CPU,
    bf16 autocast runs, but without native bf16 units it is slower than fp32).
    """
    if requested not in PRECISIONS:
        raise invalid_value("precision", requested, valid=PRECISIONS)
    bf16_ok = device.type != "cuda" or torch.cuda.is_bf16_supported(including_emulation=False)
    if requested == "auto":
        return "bf16" if device.type == "cuda" and bf16_ok else "fp32"
    if requested == "bf16" and not bf16_ok:
        raise TrialFailedError(
            f"`precision` is 'bf16', but this trial's GPU ({torch.cuda.get_device_name(device)}) "
            f"has no bfloat16 support. Use --precision fp16 (or fp32), or auto, which picks "
            f"bf16 only where it is supported."
        )
    return requested


class Precision:
    """Autocast and gradient scaling of one trial (``fp32``: neither)."""

    def __init__(self, requested: str, device: torch.device) -> None:
        self.name = resolve_precision(requested, device)
        self.device = device
        self.dtype = DTYPES[self.name]
        #: Scales the fp16 loss so small gradients do not underflow; a no-op otherwise.
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.name == "fp16")

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Run the enclosed forward pass in this precision."""
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.name != "fp32"):
            yield

    def __repr__(self) -> str:
        return f"Precision({self.name!r}, device={str(self.device)!r})"
