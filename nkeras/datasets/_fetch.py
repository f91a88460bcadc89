"""Where a dataset file comes from: the cache, a system copy, or a checked download.

For each file, in order:

1. the cache, ``$NKERAS_HOME/datasets/<dataset>/`` (``NKERAS_HOME`` defaults
   to ``~/.nkeras``);
2. system copies, ``<root>/<dataset>/`` for each root in ``NKERAS_DATASET_DIRS``
   (``os.pathsep``-separated) and then in ``SYSTEM_DATASET_DIRS``; Debian's
   ``dataset-fashion-mnist`` installs ``/usr/share/datasets/fashion-mnist/``;
3. a download from the file's URL into the cache, written atomically.

Every copy is checked against a known SHA-256 before its bytes are returned,
and the bytes returned are the very bytes that were checked.
"""

import contextlib
import gzip
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

SYSTEM_DATASET_DIRS = ("/usr/local/share/datasets", "/usr/share/datasets")
DOWNLOAD_TIMEOUT_S = 60.0


class DatasetUnavailableError(OSError):
    """No copy of a dataset file could be found, verified or downloaded."""


class _ContentRejected(ValueError):
    pass


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset.

    Args:
        name: the file's name in the cache and in system directories.
        url: where to download it from.
        sha256: hex SHA-256 of the file, or of its decompressed content
            when ``gzipped`` (so a re-compressed copy, such as Debian's,
            verifies as well as the original).
        gzipped: whether the file is gzip-compressed and ``sha256`` is that
            of the decompressed bytes.
    """

    name: str
    url: str
    sha256: str
    gzipped: bool = False


def nkeras_home():
    """``$NKERAS_HOME``, or ``~/.nkeras`` when unset."""
    return Path(os.environ.get("NKERAS_HOME") or "~/.nkeras").expanduser()


def cache_dir(dataset):
    """The cache directory of ``dataset``: ``$NKERAS_HOME/datasets/<dataset>``."""
    return nkeras_home() / "datasets" / dataset


def system_dirs(dataset):
    """The directories searched for system copies of ``dataset``, in order."""
    extra = [root for root in os.environ.get("NKERAS_DATASET_DIRS", "").split(os.pathsep) if root]
    return [Path(root) / dataset for root in (*extra, *SYSTEM_DATASET_DIRS)]


def fetch(dataset, data_file, filename=None, hint=""):
    """Return the verified content of one dataset file.

    Args:
        dataset: the dataset's directory name, e.g. ``"fashion-mnist"``.
        data_file: the ``DataFile`` to get.
        filename: where to cache it, relative to the cache directory (an
            absolute path is used as is); defaults to ``data_file.name``.
        hint: how to obtain the file, put first in the error's advice.

    Returns:
        ``bytes``: the file's content, decompressed when ``data_file.gzipped``.

    Raises:
        DatasetUnavailableError: every place failed; the message lists each
            place tried, why it failed and what to do.
    """
    cache_path = cache_dir(dataset) / (filename or data_file.name)
    failures = []
    for path in (cache_path, *(directory / data_file.name for directory in system_dirs(dataset))):
        if not path.is_file():
            failures.append(f"{path}: not found")
            continue
        try:
            return _verified(path.read_bytes(), data_file)
        except (OSError, _ContentRejected) as error:
            failures.append(f"{path}: {error}")
    try:
        return _download(data_file, cache_path)
    except (OSError, _ContentRejected) as error:
        failures.append(f"download from {data_file.url}: {error}")
    checked = "its decompressed content" if data_file.gzipped else "the file"
    raise DatasetUnavailableError(
        f"Could not get {data_file.name!r} of dataset {dataset!r}. Tried:\n"
        + "".join(f"  - {failure}\n" for failure in failures)
        + f"To fix it, {hint}download {data_file.url} to {cache_path} (SHA-256 of {checked}: {data_file.sha256}), "
        f"or list a directory holding {dataset}/{data_file.name} in NKERAS_DATASET_DIRS."
    )


def _verified(raw, data_file):
    content = raw
    if data_file.gzipped:
        try:
            content = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise _ContentRejected(f"not a valid gzip file ({error})") from None
    digest = hashlib.sha256(content).hexdigest()
    if digest != data_file.sha256:
        raise _ContentRejected(f"SHA-256 mismatch: expected {data_file.sha256}, got {digest}")
    return content


def _download(data_file, destination):
    destination.parent.mkdir(parents=True, exist_ok=True)
    print(f"Downloading {data_file.url}", file=sys.stderr)
    handle, partial = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            with urllib.request.urlopen(data_file.url, timeout=DOWNLOAD_TIMEOUT_S) as source:
                shutil.copyfileobj(source, out)
        content = _verified(Path(partial).read_bytes(), data_file)
        os.replace(partial, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise
    return content
