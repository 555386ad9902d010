"""Reader and writer of IDX files (the MNIST / Fashion-MNIST format), gzipped or not.

An IDX file is a 4-byte magic (two zero bytes, a dtype code, the number of dimensions), one
big-endian uint32 per dimension, then the data in C order. Only unsigned bytes (code 0x08)
are supported, which is what every MNIST-like release uses.
"""

from __future__ import annotations

import gzip as _gzip
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

from robens.data.files import read_file
from robens.errors import DatasetError

GZIP_MAGIC = b"\x1f\x8b"
UINT8_CODE = 0x08
MAX_NDIM = 4
#: The IDX files of each split of an MNIST-like dataset.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_DTYPE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Return the content of ``path``, decompressed when it starts with the gzip magic."""
    path = Path(path)
    raw = read_file(path)
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return _gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(
            f"{path} is a corrupt or truncated gzip file ({exc}); delete it and fetch it again"
        ) from None


def parse_header(data: bytes, path: str | os.PathLike[str] = "<bytes>") -> tuple[int, ...]:
    """Validate an IDX header and return the declared dimensions."""
    if len(data) < 4:
        raise DatasetError(f"{path} is not an IDX file: only {len(data)} bytes long")
    if data[0] != 0 or data[1] != 0:
        raise DatasetError(
            f"{path} is not an IDX file: bad magic {data[:4].hex()} (expected 0000 then the"
            " dtype code and the number of dimensions)"
        )
    code, ndim = data[2], data[3]
    if code != UINT8_CODE:
        kind = _DTYPE_NAMES.get(code, "unknown")
        raise DatasetError(
            f"{path} has IDX dtype code 0x{code:02X} ({kind}); only 0x08 (unsigned byte)"
            " is supported"
        )
    if not 1 <= ndim <= MAX_NDIM:
        raise DatasetError(f"{path} declares {ndim} dimensions; expected 1 to {MAX_NDIM}")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DatasetError(f"{path} is truncated: the IDX header itself is incomplete")
    return struct.unpack(f">{ndim}I", data[4:header_len])


def read_idx(path: str | os.PathLike[str], ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (gzip detected by its magic bytes) into a uint8 numpy array.

    ``ndim``, when given, is the number of dimensions the caller expects (1 for labels,
    3 for images). Every problem raises :class:`DatasetError` naming the file.
    """
    data = read_bytes(path)
    dims = parse_header(data, path)
    if ndim is not None and len(dims) != ndim:
        raise DatasetError(f"{path} has {len(dims)} dimensions {list(dims)}, expected {ndim}")
    header_len = 4 + 4 * len(dims)
    expected = int(np.prod(dims, dtype=np.int64))
    actual = len(data) - header_len
    if actual < expected:
        raise DatasetError(
            f"{path} is truncated: its header declares shape {list(dims)} ({expected} bytes)"
            f" but it holds {actual} bytes of data"
        )
    if actual > expected:
        raise DatasetError(
            f"{path} has {actual - expected} trailing bytes after the {expected} bytes its"
            f" header declares (shape {list(dims)})"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(dims).copy()


def read_idx_shape(path: str | os.PathLike[str]) -> tuple[int, ...]:
    """Return the dimensions an IDX file declares, reading only its header."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(4 + 4 * MAX_NDIM)
            if head[:2] == GZIP_MAGIC:
                fh.seek(0)
                with _gzip.GzipFile(fileobj=fh) as gz:
                    head = gz.read(4 + 4 * MAX_NDIM)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"cannot read the IDX header of {path}: {exc}") from None
    return parse_header(head, path)


def write_idx(path: str | os.PathLike[str], array: np.ndarray, gzip: bool = False) -> Path:
    """Write a uint8 array as an IDX file (gzipped when ``gzip``), atomically."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise DatasetError(f"write_idx supports uint8 arrays only, got {array.dtype}")
    if not 1 <= array.ndim <= MAX_NDIM:
        raise DatasetError(f"write_idx supports 1 to {MAX_NDIM} dimensions, got {array.ndim}")
    header = bytes([0, 0, UINT8_CODE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array).tobytes()
    if gzip:
        payload = _gzip.compress(payload, mtime=0)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------------------- MNIST-like splits
def find_idx_file(folder: Path, base: str) -> Path | None:
    """The IDX file ``base`` in ``folder``: plain, ``.gz``, or with ``.idx`` spelling."""
    dotted = base.replace("-idx", ".idx")
    for stem in (base, dotted):
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def expected_split_files(split: str) -> list[str]:
    """The (gzipped) file names an MNIST-like ``split`` needs."""
    return [f"{f}.gz" for f in IDX_FILES[split]]


def split_files(folder: Path, split: str) -> tuple[list[Path], list[str]]:
    """(files found, names missing) of an MNIST-like ``split`` in ``folder``."""
    found, missing = [], []
    for base in IDX_FILES[split]:
        path = find_idx_file(folder, base)
        if path is None:
            missing.append(base)
        else:
            found.append(path)
    return found, missing


def read_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 [N, 1, 28, 28] and labels int64 [N] of an MNIST-like ``split``."""
    found, _ = split_files(folder, split)
    image_path, label_path = found
    images = read_idx(image_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetError(
            f"{image_path} holds shape {list(images.shape)}, expected [N, 28, 28] images"
        )
    labels = read_idx(label_path)
    if labels.ndim != 1:
        raise DatasetError(f"{label_path} holds shape {list(labels.shape)}, expected [N] labels")
    if len(labels) != len(images):
        raise DatasetError(
            f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels"
        )
    if labels.size and labels.max() > 9:
        raise DatasetError(f"{label_path} has label {int(labels.max())}, expected 0 to 9")
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype("int64"))
