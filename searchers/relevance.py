"""Which dimensions matter: the relevance of each searched dimension to the score.

The score model is a SAAS GP: its half-Cauchy prior shrinks every inverse
lengthscale towards zero, and only the dimensions the data need escape it.
On encodings in ``[0, 1]`` (:mod:`autopeft_ray.space.encoding`), the inverse
lengthscale of a dimension is therefore its relevance: near 0, the score does
not depend on it; the larger, the faster the score changes along it.

From a fully Bayesian fit (NUTS) the relevance has a median and a spread over
the posterior samples; from a MAP fit it is one value (spread zero).
:func:`fit_relevance` refits a MAP SAAS GP from trial results, for runs whose
searcher holds no model (random search, an old run folder).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from botorch.models.model import Model

from autopeft_ray.exceptions import ConfigurationError, invalid_value
from autopeft_ray.space import PeftConfiguration, SearchSpace
from autopeft_ray.space.encoding import encode

from .fit_warnings import count_harmless_warnings
from .surrogate import DTYPE, fit_map_score_model

#: Fewer completed trials than this give no relevance: a GP of one point says nothing.
MIN_TRIALS = 2
#: The spread reported: these quantiles over NUTS samples.
QUANTILES = (0.1, 0.9)


def inverse_lengthscales(model: Model) -> np.ndarray:
    """``samples x d`` inverse ARD lengthscales of a fitted GP (one row for a MAP fit)."""
    for module in model.modules():
        lengthscale = getattr(module, "lengthscale", None)
        if lengthscale is not None and getattr(module, "ard_num_dims", None):
            values = lengthscale.detach().to(DTYPE).cpu().numpy()
            return 1.0 / values.reshape(-1, values.shape[-1])
    raise invalid_value(
        "model", type(model).__name__, expected="a GP with an ARD kernel (a SAAS GP)"
    )


def model_relevance(
    space: SearchSpace,
    model: Model,
    *,
    source: str,
    n_observations: int,
    extra_inputs: Sequence[str] = (),
) -> dict[str, Any]:
    """Relevance of each of ``space``'s dimensions under a fitted ``model``, most relevant first.

    ``extra_inputs`` names the model's inputs after the dimensions that have a
    lengthscale (``"param_fraction"`` with ``cost_input=True``).

    Returns ``{"source", "n_observations", "dimensions": [{"name", "median",
    "low", "high"}, ...]}``; ``low``/``high`` are the 10th/90th percentiles over
    posterior samples (equal to ``median`` for a MAP fit).
    """
    values = inverse_lengthscales(model)
    names = [d.name for d in space.dimensions] + list(extra_inputs)
    if values.shape[1] != len(names):
        raise invalid_value(
            "model",
            f"a model of {values.shape[1]} inputs",
            expected=f"a model of {len(names)} inputs, one per dimension ({', '.join(names)})",
            fix="Pass the space the model was fitted on.",
        )
    low, median, high = np.quantile(values, [QUANTILES[0], 0.5, QUANTILES[1]], axis=0)
    rows: list[dict[str, Any]] = [
        {"name": n, "median": float(m), "low": float(lo), "high": float(hi)}
        for n, m, lo, hi in zip(names, median, low, high, strict=True)
    ]
    rows.sort(key=lambda r: r["median"], reverse=True)
    return {"source": source, "n_observations": int(n_observations), "dimensions": rows}


def fit_relevance(
    space: SearchSpace,
    results: Sequence[tuple[PeftConfiguration, float]],
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit a MAP SAAS GP of ``(configuration, score)`` pairs; return :func:`model_relevance`.

    Raises:
        ConfigurationError: fewer than ``MIN_TRIALS`` results.
    """
    if len(results) < MIN_TRIALS:
        raise ConfigurationError(
            f"Which dimensions matter needs at least {MIN_TRIALS} completed trials; "
            f"got {len(results)}. Let the search run longer (more --num-trials)."
        )
    X = torch.tensor([encode(space, c) for c, _ in results], dtype=DTYPE)
    Y = torch.tensor([[float(s)] for _, s in results], dtype=DTYPE)
    with count_harmless_warnings({}):
        model = fit_map_score_model(X, Y, seed=seed)
    return model_relevance(space, model, source="saas-map refit", n_observations=len(results))
