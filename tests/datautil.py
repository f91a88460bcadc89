"""Helpers for tests that need real dataset files."""

import os

import pytest

from nkeras.datasets import _fetch, fashion_mnist


def fashion_mnist_installed():
    """Whether some system directory holds all four Fashion-MNIST files."""
    return any(
        all((directory / data_file.name).is_file() for data_file in fashion_mnist.FILES.values())
        for directory in _fetch.system_dirs(fashion_mnist.DATASET)
    )


def requires_fashion_mnist(test):
    """Mark ``test`` as needing the real Fashion-MNIST system copy (``pytest -m data``).

    Skipped when the copy is missing, except in CI (``CI=true``), where it
    runs and so fails: CI installs ``dataset-fashion-mnist``.
    """
    skip = os.environ.get("CI") != "true" and not fashion_mnist_installed()
    reason = "Fashion-MNIST not installed: apt-get install dataset-fashion-mnist"
    return pytest.mark.data(pytest.mark.skipif(skip, reason=reason)(test))
