import warnings

import pytest
from botorch.exceptions.warnings import InputDataWarning
from linear_operator.utils.warnings import NumericalWarning

from autopeft_ray.searchers.fit_warnings import count_harmless_warnings


def test_harmless_warnings_are_counted_and_others_still_shown():
    counts: dict[str, int] = {}
    with pytest.warns(UserWarning, match="something else"), count_harmless_warnings(counts):
        for _ in range(3):
            warnings.warn("A not p.d., added jitter of 1.0e-06", NumericalWarning, stacklevel=2)
        warnings.warn(
            "Data (outcome observations) is not standardized (std = tensor([0.], "
            "dtype=torch.float64), mean = tensor([0.]))",
            InputDataWarning,
            stacklevel=2,
        )
        warnings.warn("something else", UserWarning, stacklevel=2)
    assert counts == {"jitter added to a covariance": 3, "every score fitted was the same": 1}


def test_a_real_standardisation_problem_is_not_hidden():
    shown = pytest.warns(InputDataWarning, match="std = tensor\\(\\[5")
    with shown, count_harmless_warnings({}):
        warnings.warn(
            "Data (outcome observations) is not standardized (std = tensor([5.]))",
            InputDataWarning,
            stacklevel=2,
        )
