"""Reading .npy and .npz files without trusting them.

`np.load` allocates what a header declares before reading a byte of data (a 128-byte .npy
claiming 2.79 TiB asks for 2.79 TiB), and an .npz that is not a zip archive raises whatever
its parser hits. Here each array's header is read first and checked against the bytes the
file (or the archive member) actually holds; object arrays (pickles) are refused; every
failure is one `ValueError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import IO

import numpy as np


def load_npy(path: str | Path) -> np.ndarray:
    """The array in a .npy file (ValueError if it is not one, or its header lies)."""
    path = Path(path)
    with open(path, "rb") as handle:
        _check_header(handle, path.stat().st_size, path.name)
        handle.seek(0)
        return _loaded(lambda: np.load(handle, allow_pickle=False), path.name)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of a .npz archive, by name (ValueError as for load_npy)."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{path.name} is not an .npz archive ({exc})") from None
    arrays = {}
    with archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            with archive.open(info) as member:
                _check_header(member, info.file_size, f"{path.name}:{name}")
            with archive.open(info) as member:
                arrays[name] = _loaded(lambda m=member: np.lib.format.read_array(
                    m, allow_pickle=False), f"{path.name}:{name}")
    return arrays


def _check_header(handle: IO[bytes], size: int, what: str) -> None:
    """The declared shape and dtype fit in `size` bytes, and are not objects."""
    try:
        version = np.lib.format.read_magic(handle)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(handle)
    except Exception as exc:  # numpy raises ValueError, EOFError, SyntaxError...
        raise ValueError(f"{what} is not a .npy array ({type(exc).__name__}: "
                         f"{str(exc)[:120]})") from None
    if dtype.hasobject:
        raise ValueError(f"{what} holds Python objects (a pickle), not numbers")
    declared = math.prod(shape) * dtype.itemsize
    available = size - handle.tell()
    if declared > available:
        raise ValueError(f"{what}: its header declares {list(shape)} {dtype} "
                         f"({declared:,} bytes), but the file holds {max(available, 0):,}")


def _loaded(load, what: str) -> np.ndarray:
    try:
        return load()
    except Exception as exc:  # a header that passed but data that does not parse
        raise ValueError(f"{what} could not be read ({type(exc).__name__}: "
                         f"{str(exc)[:120]})") from None
