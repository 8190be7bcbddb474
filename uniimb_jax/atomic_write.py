"""Writing a file whole or not at all: the one helper every writer of the library uses
(work-directory JSON and metrics, selected models, downloads, dataset and feature caches).

    with atomic_write(path, "w", fsync=True) as f:
        json.dump(obj, f)

The content goes to a temporary file beside ``path`` (same folder, so the final
``os.replace`` is an atomic rename); ``path`` is replaced only when the block ends without an
error, and the temporary file is removed in every case. An existing ``path`` therefore
survives a full disk, a kill or an exception inside the block.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from typing import IO, Iterator, Union


@contextlib.contextmanager
def atomic_write(path: Union[str, os.PathLike], mode: str = "wb", *, fsync: bool = False
                 ) -> Iterator[IO]:
    """Yields a file opened with ``mode`` whose content replaces ``path`` at the end.

    Args:
      path: the file to write; its folder is created if missing.
      mode: ``open`` mode of the temporary file (``"w"``, ``"wb"``, ``"w+b"``, ...).
      fsync: flush the content to the disk before the rename (files a resumed run reads).

    Raises:
      OSError: from creating, writing or renaming (``path`` is then unchanged).
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        # mkstemp makes the file private; results and shared caches should stay readable.
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    finally:
        pathlib.Path(tmp_name).unlink(missing_ok=True)
