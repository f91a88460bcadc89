"""Atomic file writes: a temporary file in the target's folder, flushed to
disk, then renamed over the target, so an interrupted save leaves the
previous file whole."""

import os
import tempfile


def atomic_write(filepath, write, overwrite=True):
    """Write ``filepath`` through ``write(stream)`` atomically.

    Args:
        filepath: the file to create or replace.
        write: a function writing the contents to a binary stream.
        overwrite: when False, an existing file raises FileExistsError.
    """
    filepath = os.fspath(filepath)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False")
    if os.path.isdir(filepath):
        raise IsADirectoryError(f"Cannot save to {filepath!r}: it is a directory")
    folder = os.path.dirname(os.path.abspath(filepath))
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(filepath), dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, filepath)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
