import numpy as np
import pytest

from nkeras.backend import clear_session


@pytest.fixture(autouse=True)
def _fresh_names():
    clear_session()
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
