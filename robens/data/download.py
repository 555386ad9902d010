"""Explicit dataset downloads with MD5 verification, and a description of what is on disk.

Only :func:`download_dataset` touches the network (``urllib``); loading never downloads.
Files are written to a temporary name and renamed once their checksum matches; the CIFAR-10
tarball is extracted member by member after rejecting absolute paths, ``..`` and links.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from robens.data.cifar import BATCH_FOLDER, TEST_BATCHES, TRAIN_BATCHES, read_cifar10
from robens.data.datasets import (
    DATASETS,
    SPLITS,
    _split_files,
    candidate_dirs,
    canonical_name,
    data_home,
    find_dataset_dir,
    how_to_get,
)
from robens.data.idx import read_bytes, read_idx_shape
from robens.data.synthetic import DEFAULT_SIZES
from robens.errors import DatasetError

MIRRORS: dict[str, tuple[str, ...]] = {
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}
#: MD5 of the files as distributed (what a download must match).
CHECKSUMS: dict[str, dict[str, str]] = {
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "cifar10": {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
}
#: MD5 of the decompressed IDX files: identifies the data whatever gzip re-packed it
#: (Debian's dataset-fashion-mnist ships re-compressed .gz files).
RAW_MD5: dict[str, dict[str, str]] = {
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
}
_CHUNK = 1 << 20


def file_md5(path: str | os.PathLike[str]) -> str:
    """Hex MD5 of a file's bytes."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def content_md5(path: str | os.PathLike[str]) -> str:
    """Hex MD5 of a file's content, decompressed first when it is gzipped."""
    return hashlib.md5(read_bytes(path), usedforsecurity=False).hexdigest()


def _matches(path: Path, name: str, md5: str) -> bool:
    """Whether ``path`` is the file ``name``: same bytes, or same decompressed content."""
    if file_md5(path) == md5:
        return True
    raw = RAW_MD5.get(name, {}).get(path.name.removesuffix(".gz"))
    if raw is None:
        return False
    try:
        return content_md5(path) == raw
    except DatasetError:
        return False


def _report(done: int, total: int | None, label: str) -> None:
    if total:
        sys.stderr.write(f"\r{label}: {done / total:6.1%} of {total / 1e6:.1f} MB")
    else:
        sys.stderr.write(f"\r{label}: {done / 1e6:.1f} MB")
    sys.stderr.flush()


def _fetch(url: str, target: Path, md5: str, progress: bool, timeout: float) -> None:
    """Download ``url`` to ``target`` via a temporary file; verify the MD5, then rename."""
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "robens"})
    except ValueError as exc:
        raise DatasetError(f"{url}: not a valid URL ({exc})") from None
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        h = hashlib.md5(usedforsecurity=False)
        try:
            with os.fdopen(fd, "wb") as out:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    done = 0
                    for block in iter(lambda: response.read(_CHUNK), b""):
                        out.write(block)
                        h.update(block)
                        done += len(block)
                        if progress:
                            _report(done, total, target.name)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            raise DatasetError(f"{url}: download failed ({exc})") from None
        finally:
            if progress:
                sys.stderr.write("\n")
        got = h.hexdigest()
        if got != md5:
            raise DatasetError(
                f"{url}: checksum mismatch (md5 {got}, expected {md5}); the file was deleted"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _check_member(member: tarfile.TarInfo, archive: Path) -> PurePosixPath:
    name = member.name
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DatasetError(f"{archive}: refusing member with an absolute path: {name!r}")
    if ".." in path.parts or "\\" in name:
        raise DatasetError(f"{archive}: refusing member that escapes the folder: {name!r}")
    if not (member.isfile() or member.isdir()):
        raise DatasetError(f"{archive}: refusing member {name!r} (links and devices not allowed)")
    return path


def safe_extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> list[Path]:
    """Extract a tar archive into ``dest`` after checking every member; return top entries.

    The archive is unpacked into a staging folder and each top-level entry then renamed into
    ``dest`` (replacing an older one), so a failure leaves ``dest`` as it was.
    """
    archive, dest = Path(archive), Path(dest)
    staging = Path(tempfile.mkdtemp(dir=dest, prefix=".extract-"))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = [(m, _check_member(m, archive)) for m in tar.getmembers()]
                for member, rel in members:
                    target = staging.joinpath(*rel.parts)
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source = tar.extractfile(member)
                    if source is None:
                        raise DatasetError(f"{archive}: cannot read member {member.name!r}")
                    with source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out, _CHUNK)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"{archive} is not a readable tar archive ({exc})") from None
        tops = []
        for entry in sorted(staging.iterdir()):
            final = dest / entry.name
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)
            elif final.exists() or final.is_symlink():
                final.unlink()
            os.replace(entry, final)
            tops.append(final)
        return tops
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    progress: bool = True,
    checksums: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download the official files of ``name`` into ``root`` (default ``~/.robens/data/<name>``).

    Files already present with the right checksum are kept. ``base_url`` replaces the
    mirrors (any URL urllib opens, ``file://`` included) and ``checksums`` the expected MD5s
    (file name -> md5), both for tests and private mirrors. Returns the dataset folder.
    """
    name = canonical_name(name)
    if name not in CHECKSUMS:
        raise DatasetError(f"dataset {name!r} is generated on the fly; there is nothing to fetch")
    files = dict(checksums) if checksums is not None else CHECKSUMS[name]
    dest = Path(root).expanduser() if root is not None else data_home() / name
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create {dest}: {exc.strerror or exc}") from None
    for filename, md5 in files.items():
        target = dest / filename
        if target.is_file() and _matches(target, name, md5):
            continue
        bases = (base_url,) if base_url else MIRRORS[name]
        errors = []
        for base in bases:
            url = base.rstrip("/") + "/" + filename
            try:
                _fetch(url, target, md5, progress, timeout)
                break
            except DatasetError as exc:
                errors.append(str(exc))
        else:
            raise DatasetError(f"could not download {filename}:\n  " + "\n  ".join(errors))
    if name == "cifar10":
        batches = dest / BATCH_FOLDER
        if not all((batches / b).is_file() for b in TRAIN_BATCHES + TEST_BATCHES):
            for archive in files:
                if archive.endswith((".tar.gz", ".tgz", ".tar")):
                    safe_extract(dest / archive, dest)
    return dest


def verify_dataset(name: str, root: str | os.PathLike[str] | None = None) -> dict[str, bool]:
    """Check the files of ``name`` found on disk against the official checksums.

    IDX files pass when either the file or its decompressed content matches, so re-gzipped
    copies (such as Debian's) verify. Returns {file path: ok}.
    """
    name = canonical_name(name)
    folder = find_dataset_dir(name, root)
    if folder is None or name not in CHECKSUMS:
        return {}
    result: dict[str, bool] = {}
    if name == "cifar10":
        archive = folder / "cifar-10-python.tar.gz"
        if archive.is_file():
            result[str(archive)] = file_md5(archive) == CHECKSUMS[name][archive.name]
        return result
    for split in SPLITS:
        for path in _split_files(name, folder, split)[0]:
            raw_name = path.name.removesuffix(".gz").replace(".idx", "-idx")
            ok = False
            try:
                ok = file_md5(path) == CHECKSUMS[name].get(f"{raw_name}.gz") or (
                    content_md5(path) == RAW_MD5[name][raw_name]
                )
            except DatasetError:
                ok = False
            result[str(path)] = ok
    return result


def dataset_info(name: str, root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Describe dataset ``name`` on this machine (used by ``robens data info``).

    Keys: ``name``, ``folder`` (str or None), ``searched``, ``files`` (name and size in
    bytes), ``splits`` ({split: {"samples": n} or {"error": message}}), ``num_classes``,
    ``in_shape``, ``class_names`` and, when no folder holds the files, ``how_to_get``.
    """
    name = canonical_name(name)
    spec = DATASETS.get(name)
    in_shape, class_names = spec.in_shape, spec.class_names
    info: dict[str, Any] = {
        "name": name,
        "folder": None,
        "searched": [],
        "files": [],
        "splits": {},
        "num_classes": len(class_names),
        "in_shape": list(in_shape),
        "class_names": list(class_names),
    }
    if spec.generate is not None:  # generated, never read from disk
        sizes = DEFAULT_SIZES if name == "synthetic" else {}
        info["splits"] = {s: {"samples": n} for s, n in sizes.items()}
        return info
    info["searched"] = [str(d) for d in candidate_dirs(name, root)]
    folder = find_dataset_dir(name, root)
    if folder is None:
        info["how_to_get"] = how_to_get(name)
        return info
    info["folder"] = str(folder)
    info["files"] = [
        {"name": str(p.relative_to(folder)), "size": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    ]
    for split in SPLITS:
        try:
            info["splits"][split] = {"samples": _count(name, folder, split)}
        except DatasetError as exc:
            info["splits"][split] = {"error": str(exc)}
    return info


def _count(name: str, folder: Path, split: str) -> int:
    """Number of samples of ``split``, reading only IDX headers (CIFAR batches are loaded)."""
    found, missing = _split_files(name, folder, split)
    if missing:
        raise DatasetError(f"{folder} lacks {missing}")
    if name == "cifar10":
        return int(len(read_cifar10(folder, split)[1]))
    images, labels = (read_idx_shape(p) for p in found)
    if images[0] != labels[0]:
        raise DatasetError(f"{found[0]} has {images[0]} images but {found[1]} {labels[0]} labels")
    return int(images[0])
