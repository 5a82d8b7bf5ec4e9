"""A random search, or ``evaluate``'s fixed configurations, loads neither Ax nor JAX.

``autopeft_ray.searchers`` imports each searcher when it is first used, and
``make_searcher`` imports only the one asked for: Ax, JAX (NUTS) and the
BoTorch model pieces of the AutoPEFT searcher take seconds to import, paid by
every CLI run otherwise. Checked in a fresh interpreter, since this one has
imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
from autopeft_ray.config import SearchOptions
from autopeft_ray.experiment.search import make_searcher
from autopeft_ray.objectives.cost import ParamCost
from autopeft_ray.searchers import FixedConfigurations
from autopeft_ray.space import SearchSpace
from autopeft_ray.models import DEFAULT_MODEL

space = SearchSpace.from_model_config(DEFAULT_MODEL, "full")
searcher = make_searcher(SearchOptions(searcher="random"), space, ParamCost.from_model(DEFAULT_MODEL))
searcher.suggest("t0")
before = sorted(m for m in ("ax", "jax", "numpyro", "autopeft_ray.searchers.surrogate") if m in sys.modules)
import autopeft_ray.searchers as searchers
searchers.AutoPEFTSearcher
after = "autopeft_ray.searchers.surrogate" in sys.modules
print(json.dumps({"type": type(searcher).__name__, "before": before, "after": after}))
"""


def test_a_random_search_imports_neither_ax_nor_jax() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, check=True
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["type"] == "RandomPEFTSearcher"
    assert found["before"] == []
    assert found["after"] is True  # the lazy attribute still imports the searcher


def test_every_name_of_the_package_resolves() -> None:
    import autopeft_ray.searchers as searchers

    for name in searchers.__all__:
        assert getattr(searchers, name).__name__ == name
    assert set(searchers.__all__) <= set(dir(searchers))
