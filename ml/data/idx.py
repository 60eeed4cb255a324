"""Reading IDX files (the MNIST family's format), gzipped or plain, into numpy arrays.

Layout: two zero bytes, one dtype code, one byte with the number of dimensions, then one
big-endian uint32 per dimension, then the values in big-endian C order.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ml.errors import DataError

# dtype code -> big-endian numpy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when the file is gzip-compressed (by content, not name)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path}: {exc.strerror or exc}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"IDX file {path} is not a valid gzip file: {exc}") from None
    return raw


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into an array of the declared dtype (native byte order) and shape."""
    if len(data) < 4:
        raise DataError(f"IDX file {name} is too short for a header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"IDX file {name} has a bad magic number (first bytes {data[:4].hex()})")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise DataError(f"IDX file {name} has unknown dtype code 0x{code:02x}")
    if ndim < 1:
        raise DataError(f"IDX file {name} declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"IDX file {name} is truncated inside its header ({ndim} dimensions declared)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        raise DataError(f"IDX file {name} holds {actual} data bytes but its header {list(dims)} needs {expected}")
    values = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return values.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (`.gz` or plain); raise DataError naming the file if it is malformed."""
    path = Path(path)
    return parse_idx(_read_bytes(path), name=str(path))
