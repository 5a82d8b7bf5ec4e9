"""What the model-based searchers share: their settings and the hypervolume reference.

Both :class:`~.autopeft.AutoPEFTSearcher` and :class:`~.axsearch.AxPEFTSearcher`
take a cost function, a number of random initial configurations, a SAAS
surrogate (NUTS or MAP) with its NUTS settings, and JAX's compilation cache.
They measure improvement against a reference ``(score, param_fraction)`` in
natural units: by default score 0.0 and the fraction of the space's largest
configuration (the role of the paper's (0.7, 26%) on RTE, for any model).
A minimised score has no natural default bound, so it needs one given.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from autopeft_ray.config import SURROGATES
from autopeft_ray.exceptions import ConfigurationError, invalid_value
from autopeft_ray.objectives.pareto import reference_point_for
from autopeft_ray.space import PeftConfiguration, SearchSpace
from autopeft_ray.validation import check_int, check_reference_point

from .surrogate import NutsSettings

#: JAX's persistent compilation cache unless JAX is configured otherwise.
DEFAULT_JAX_CACHE_DIR = os.path.join("~", ".cache", "autopeft_ray", "jax")
#: The GP needs a few full-budget results before the first model-based step.
MIN_OBSERVATIONS = 2


def derive_seed(seed: int, *parts: object) -> int:
    """A stable 31-bit seed from the searcher seed and a purpose."""
    return zlib.crc32(repr((seed, *parts)).encode()) & 0x7FFFFFFF


def check_cost_fn(cost_fn: Any) -> Callable[[PeftConfiguration], float]:
    """``cost_fn`` if it is callable; otherwise the error that says what to pass."""
    if not callable(cost_fn):
        raise invalid_value(
            "cost_fn",
            cost_fn,
            expected="a callable configuration -> parameter fraction",
            fix="Pass autopeft_ray.objectives.ParamCost.from_model(model_name).",
        )
    return cost_fn


class ModelBasedSearcher:
    """Mixin for a model-based :class:`~.base.PeftSearcherBase`: settings and reference point."""

    _metric: Any
    _mode: Any
    reference_point: tuple[float, float] | None
    _default_fraction: float

    def _init_model_based(
        self,
        space: SearchSpace,
        cost_fn: Callable[[PeftConfiguration], float],
        *,
        num_initial: int,
        surrogate: str,
        nuts: tuple[int, int, int],
        jax_cache_dir: str | os.PathLike[str] | None,
        reference_point: Sequence[float] | None,
    ) -> None:
        """Check and set the shared settings; call after ``PeftSearcherBase.__init__``."""
        self.num_initial = check_int("num_initial", num_initial, minimum=0)
        if surrogate not in SURROGATES:
            raise invalid_value("surrogate", surrogate, valid=SURROGATES)
        self.surrogate = surrogate
        self.nuts = NutsSettings(*nuts)
        if jax_cache_dir is not None and not isinstance(jax_cache_dir, (str, os.PathLike)):
            raise invalid_value("jax_cache_dir", jax_cache_dir, expected="a folder path or None")
        self.jax_cache_dir = None if jax_cache_dir is None else os.path.expanduser(jax_cache_dir)
        self._cost: Callable[[PeftConfiguration], float] = cost_fn
        self._default_fraction = reference_point_for(space, cost_fn)[1]
        self.reference_point = (
            None if reference_point is None else check_reference_point(reference_point)
        )
        self._check_mode_has_reference()

    def _check_mode_has_reference(self) -> None:
        if self._mode == "min" and self.reference_point is None:
            raise ConfigurationError(
                f"`reference_point` is required when mode='min' (metric {self._metric!r}): "
                "the default score bound 0.0 suits maximised scores only. Pass "
                "reference_point=(worst acceptable value, largest acceptable fraction)."
            )

    def set_search_properties(
        self, metric: Any, mode: Any, config: dict[str, Any], **spec: Any
    ) -> bool:
        accepted: bool = super().set_search_properties(  # type: ignore[misc]
            metric, mode, config, **spec
        )
        self._check_mode_has_reference()
        return accepted

    @property
    def reference(self) -> tuple[float, float]:
        """The reference ``(score, param_fraction)`` in natural units (given or default)."""
        return self.reference_point or (0.0, self._default_fraction)
