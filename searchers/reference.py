"""The hypervolume reference point shared by the model-based searchers.

Both :class:`~.autopeft.AutoPEFTSearcher` and :class:`~.axsearch.AxPEFTSearcher`
measure improvement against a reference ``(score, param_fraction)`` in natural
units: by default score 0.0 and the fraction of the space's largest
configuration (the role of the paper's (0.7, 26%) on RTE, for any model).
A minimised score has no natural default bound, so it needs one given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.objectives.pareto import reference_point_for
from autopeft_ray.space import PeftConfiguration, SearchSpace
from autopeft_ray.validation import check_reference_point


class HypervolumeReference:
    """Mixin for a :class:`~.base.PeftSearcherBase` with a hypervolume reference point."""

    _metric: Any
    _mode: Any
    reference_point: tuple[float, float] | None
    _default_fraction: float

    def _init_reference(
        self,
        space: SearchSpace,
        cost_fn: Callable[[PeftConfiguration], float],
        reference_point: Sequence[float] | None,
    ) -> None:
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
