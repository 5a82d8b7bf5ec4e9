"""The schedule of a search: given points, the initial design, the model, the random fallback.

Written once for every searcher. :meth:`Schedule.next` takes, in order:

1. the ``points_to_evaluate`` not seen yet;
2. random configurations until ``num_initial`` were suggested (the initial
   design: as given, else :func:`autopeft_ray.config.initial_design_size`
   of the space and, once Tune or ``search_callbacks`` tells it, the budget);
3. while fewer than :data:`MIN_OBSERVATIONS` results can be fitted: nothing
   (``None``, Tune asks again) if trials run and the searcher waits, else a
   random configuration;
4. the model's proposal.

A searcher without a model (random search) takes 1 and then random draws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet

from autopeft_ray.config import initial_design_size
from autopeft_ray.space import PeftConfiguration, SearchSpace
from autopeft_ray.validation import check_int

#: The GP needs a few full-budget results before the first model-based step.
MIN_OBSERVATIONS = 2


class Schedule:
    """Which source gives the next configuration (see the module).

    Args:
        points: configurations suggested first; they count towards the initial design.
        num_initial: the size of the initial design; ``None``: scaled to the
            space and the budget (:func:`~autopeft_ray.config.initial_design_size`).
    """

    def __init__(self, points: Sequence[PeftConfiguration] = (), num_initial: int | None = None):
        self.points = list(points)
        #: ``num_initial`` as given (``None``: :func:`initial_design_size`).
        self.initial_given = (
            None if num_initial is None else check_int("num_initial", num_initial, minimum=0)
        )
        #: The search's budget of trials, once Tune or ``search_callbacks`` tells it.
        self.num_trials: int | None = None

    def num_initial(self, space: SearchSpace) -> int:
        """Random configurations before the model, for ``space``."""
        if self.initial_given is not None:
            return self.initial_given
        return initial_design_size(space, self.num_trials)

    def set_budget(self, num_trials: int | None) -> None:
        """The search runs ``num_trials`` trials (``None``, or Tune's "unlimited": unknown)."""
        if num_trials is None or num_trials >= 2**31:  # num_samples=-1 is sys.maxsize
            return
        self.num_trials = check_int("num_trials", num_trials)

    def next_point(self, seen: AbstractSet[PeftConfiguration]) -> PeftConfiguration | None:
        """The first given point not seen yet (taken off the list), or ``None``."""
        while self.points:
            config = self.points.pop(0)
            if config.model_key() not in seen:
                return config
        return None

    def next(
        self,
        *,
        space: SearchSpace,
        num_suggested: int,
        fitted: Callable[[], int],
        running: bool,
        wait: bool,
        draw: Callable[[], PeftConfiguration | None],
        model: Callable[[], PeftConfiguration | None],
    ) -> PeftConfiguration | None:
        """The next configuration after the given points (steps 2-4 of the module).

        Args:
            space: the space the initial design is sized for.
            num_suggested: suggestions made so far (given points included).
            fitted: how many results the model would fit now (asked only after the
                initial design).
            running: whether trials are running (their results will come).
            wait: whether to wait for results (``None``) rather than draw at random.
            draw: a random configuration not seen.
            model: the model's configuration (or ``None``: none ready).
        """
        if num_suggested < self.num_initial(space):
            return draw()
        if fitted() < MIN_OBSERVATIONS:
            return None if running and wait else draw()
        return model()
