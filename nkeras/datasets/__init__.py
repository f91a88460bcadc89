"""Datasets, as ``keras.datasets``: ``fashion_mnist``, ``mnist``, ``cifar10``,
each with ``load_data()``, and ``digits``, the UCI 8x8 digits shipped inside
nkeras.

A loader takes each file from the first of: the cache
``$NKERAS_HOME/datasets/<dataset>/`` (``NKERAS_HOME`` defaults to
``~/.nkeras``); a system copy under ``<root>/<dataset>/`` for the roots in
``NKERAS_DATASET_DIRS`` and then ``/usr/local/share/datasets`` and
``/usr/share/datasets`` (Debian's ``dataset-fashion-mnist`` package installs
``/usr/share/datasets/fashion-mnist/``); a download from the canonical URL
into the cache. Every copy must match a known SHA-256; downloads are written
atomically. When all fail, ``DatasetUnavailableError`` says where it looked.
"""

from nkeras.datasets import cifar10, digits, fashion_mnist, mnist
from nkeras.datasets._fetch import DatasetUnavailableError

__all__ = ["DatasetUnavailableError", "cifar10", "digits", "fashion_mnist", "mnist"]
