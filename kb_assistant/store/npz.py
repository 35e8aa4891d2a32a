"""``.npz`` files whose members are memory-mapped in place, and written member by member in blocks.

``np.savez`` stores members uncompressed, so each ``.npy`` member is a contiguous range of the zip file:
:func:`read_npz` maps it with ``np.memmap`` (nothing is read until touched) instead of reading it, and
:func:`write_member` streams a member from blocks, so neither side needs a whole array in memory. The
files stay ordinary ``.npz`` (``np.load`` reads them); no pickle either way.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Members of an ``.npz``; stored (uncompressed) members are memory-mapped, not read. ValueError if
    the file is not a readable ``.npz`` (or holds object arrays)."""
    try:
        return _read(path)
    except (zipfile.BadZipFile, struct.error, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npz ({exc})") from exc


def _read(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            fh.seek(info.header_offset + 26)
            n_name, n_extra = struct.unpack("<HH", fh.read(4))
            fh.seek(info.header_offset + 30 + n_name + n_extra)
            version = np.lib.format.read_magic(fh) if info.compress_type == zipfile.ZIP_STORED else None
            shape, fortran, dtype = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                                     else ((), False, np.dtype(object)))
            if dtype.hasobject or not int(np.prod(shape)):  # compressed, another version, empty: read
                with zf.open(info) as member:
                    out[name] = np.lib.format.read_array(member, allow_pickle=False)
                continue
            out[name] = np.memmap(path, dtype=dtype, mode="r", offset=fh.tell(), shape=shape,
                                  order="F" if fortran else "C")
    return out



def write_member(zf: zipfile.ZipFile, name: str, dtype: Any, n: int, blocks: Iterable[np.ndarray]) -> None:
    """One ``.npy`` member of ``n`` values streamed from ``blocks`` (never the whole array in memory)."""
    dtype = np.dtype(dtype)
    with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                  "fortran_order": False, "shape": (n,)})
        written = sum(fh.write(memoryview(np.ascontiguousarray(block, dtype=dtype)).cast("B"))
                      for block in blocks)
        if written != n * dtype.itemsize:
            raise AssertionError(f"{name}: {written} bytes written for {n} values of {dtype}")
