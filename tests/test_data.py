"""Tests of robens.data: IDX and CIFAR readers, dataset lookup, ImageDataset, downloads."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from robens.data import (
    ImageDataset,
    candidate_dirs,
    canonical_name,
    dataset_info,
    download_dataset,
    load_dataset,
    make_synthetic,
    read_idx,
    verify_dataset,
    write_idx,
)
from robens.data import datasets as ds_mod
from robens.data.cifar import read_cifar_batch, safe_load
from robens.data.download import CHECKSUMS, RAW_MD5, content_md5, file_md5, safe_extract
from robens.data.idx import read_idx_shape
from robens.errors import DatasetError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (apt-get install -y dataset-fashion-mnist)",
)


@pytest.fixture(autouse=True)
def _hermetic_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the user's ~/.robens or $ROBENS_DATA."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ROBENS_DATA", raising=False)


@pytest.fixture
def no_system_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ds_mod, "SYSTEM_DIRS", {})


def write_mnist_like(
    folder: Path, n_train: int = 12, n_test: int = 6, gz: bool = True, seed: int = 0
) -> Path:
    """Write the four IDX files of a tiny MNIST-like dataset."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, gzip=gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gzip=gz)
    return folder


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def fashion() -> tuple[ImageDataset, ImageDataset]:
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed")
    return load_dataset("fashion-mnist", "train"), load_dataset("fmnist", "test")


@needs_fashion
def test_real_fashion_mnist_loads(fashion: tuple[ImageDataset, ImageDataset]) -> None:
    train, test = fashion
    assert (len(train), len(test)) == (60000, 10000)
    for ds, per_class in ((train, 6000), (test, 1000)):
        assert ds.images.shape[1:] == (1, 28, 28) and ds.images.dtype == torch.uint8
        assert ds.labels.dtype == torch.int64
        assert ds.labels.bincount().tolist() == [per_class] * 10
        assert ds.in_shape == (1, 28, 28) and ds.num_classes == 10
        assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0


@needs_fashion
def test_debian_fashion_mnist_matches_official_content() -> None:
    """Debian re-gzipped the files (so the .gz MD5s differ) but the IDX content is official."""
    for base, md5 in RAW_MD5["fashion-mnist"].items():
        assert content_md5(FASHION_DIR / f"{base}.gz") == md5
    verified = verify_dataset("fashion-mnist")
    assert len(verified) == 4 and all(verified.values())


def test_checksum_tables_are_well_formed() -> None:
    for table in (*CHECKSUMS.values(), *RAW_MD5.values()):
        for md5 in table.values():
            assert len(md5) == 32 and int(md5, 16) >= 0


# ----------------------------------------------------------------------------- IDX files


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("shape", [(7,), (5, 28, 28), (2, 3, 4, 5)])
def test_idx_round_trip(tmp_path: Path, gz: bool, shape: tuple[int, ...]) -> None:
    arr = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    path = write_idx(tmp_path / "a.idx", arr, gzip=gz)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == gz
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == shape
    np.testing.assert_array_equal(out, arr)
    assert read_idx_shape(path) == shape
    assert out.flags.writeable


def test_idx_gzip_detected_by_magic_not_extension(tmp_path: Path) -> None:
    arr = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "raw.gz", arr)), arr)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "zipped", arr, gzip=True)), arr)


def test_write_idx_rejects_non_uint8(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="uint8"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.float32))


def _header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


CORRUPT_IDX = {
    "bad magic": (b"\x01\x02\x08\x01" + struct.pack(">I", 3) + b"abc", "magic"),
    "float dtype code": (_header(0x0D, (2,)) + b"\0" * 8, "0x0D"),
    "unknown dtype code": (_header(0x42, (2,)) + b"\0" * 2, "0x42"),
    "truncated data": (_header(0x08, (4, 28, 28)) + b"\0" * 100, "truncated"),
    "trailing bytes": (_header(0x08, (3,)) + b"\0" * 5, "trailing"),
    "zero ndim": (b"\0\0\x08\0", "dimensions"),
    "short header": (b"\0\0\x08\x03" + b"\0" * 5, "header"),
    "tiny file": (b"\0\0", "IDX"),
    "corrupt gzip": (b"\x1f\x8b\x08\x00" + b"garbage that is not deflate" * 3, "gzip"),
    "truncated gzip": (gzip.compress(_header(0x08, (500,)) + bytes(range(250)) * 2)[:40], "gzip"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_IDX))
def test_corrupt_idx_raises_dataset_error_naming_file(tmp_path: Path, case: str) -> None:
    content, needle = CORRUPT_IDX[case]
    path = tmp_path / f"bad-{case.replace(' ', '_')}-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=needle) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_idx_expected_ndim(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x", np.zeros((2, 3), dtype=np.uint8))
    with pytest.raises(DatasetError, match="expected 1"):
        read_idx(path, ndim=1)


def test_missing_idx_file_is_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot read"):
        read_idx(tmp_path / "nope")


# ----------------------------------------------------------------------------- loader checks


def test_load_idx_dataset_from_root(tmp_path: Path) -> None:
    folder = write_mnist_like(tmp_path / "m", gz=False)
    train = load_dataset("mnist", "train", root=folder)
    test = load_dataset("MNIST", "test", root=folder)
    assert (len(train), len(test)) == (12, 6)
    assert train.images.shape == (12, 1, 28, 28) and train.class_names == list("0123456789")
    raw = read_idx(folder / "train-images-idx3-ubyte")
    np.testing.assert_array_equal(train.images[:, 0].numpy(), raw)


def test_load_accepts_dotted_idx_names(tmp_path: Path) -> None:
    folder = write_mnist_like(tmp_path / "m")
    for p in folder.iterdir():
        p.rename(p.with_name(p.name.replace("-idx", ".idx")))
    assert len(load_dataset("mnist", "test", root=folder)) == 6


def test_label_out_of_range(tmp_path: Path) -> None:
    folder = write_mnist_like(tmp_path / "m")
    path = folder / "train-labels-idx1-ubyte.gz"
    write_idx(path, np.array([0, 1, 12] + [0] * 9, dtype=np.uint8), gzip=True)
    with pytest.raises(DatasetError, match="label 12") as info:
        load_dataset("mnist", "train", root=folder)
    assert str(path) in str(info.value)


def test_image_label_count_mismatch(tmp_path: Path) -> None:
    folder = write_mnist_like(tmp_path / "m")
    path = folder / "t10k-labels-idx1-ubyte.gz"
    write_idx(path, np.zeros(5, dtype=np.uint8), gzip=True)
    with pytest.raises(DatasetError, match="6 images") as info:
        load_dataset("fashion-mnist", "test", root=folder)
    assert str(path) in str(info.value)


def test_wrong_image_shape(tmp_path: Path) -> None:
    folder = write_mnist_like(tmp_path / "m")
    path = folder / "t10k-images-idx3-ubyte.gz"
    write_idx(path, np.zeros((6, 32, 32), dtype=np.uint8), gzip=True)
    with pytest.raises(DatasetError, match=r"\[N, 28, 28\]") as info:
        load_dataset("mnist", "test", root=folder)
    assert str(path) in str(info.value)


def test_corrupt_file_inside_dataset(tmp_path: Path) -> None:
    folder = write_mnist_like(tmp_path / "m")
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", "train", root=folder)
    assert str(path) in str(info.value)


def test_missing_fashion_mnist_message(tmp_path: Path, no_system_dirs: None) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as info:
        load_dataset("fashion-mnist", "train", root=root)
    msg = str(info.value)
    for folder in candidate_dirs("fashion-mnist", root):
        assert str(folder) in msg
    assert str(root) in msg and str(Path.home() / ".robens" / "data" / "fashion-mnist") in msg
    assert "apt-get install -y dataset-fashion-mnist" in msg
    assert "robens data download fashion-mnist" in msg
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg


def test_missing_message_lists_system_folder(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    fake = tmp_path / "usr-share" / "fashion-mnist"
    monkeypatch.setattr(ds_mod, "SYSTEM_DIRS", {"fashion-mnist": (fake,)})
    with pytest.raises(DatasetError, match=str(fake)):
        load_dataset("fashion-mnist")


def test_missing_mnist_and_cifar_messages(no_system_dirs: None) -> None:
    for name in ("mnist", "cifar10"):
        with pytest.raises(DatasetError) as info:
            load_dataset(name, "test")
        msg = str(info.value)
        assert f"robens data download {name}" in msg
        assert str(Path.home() / ".robens" / "data" / name) in msg
        assert "apt-get" not in msg


def test_partial_dataset_is_reported(tmp_path: Path, no_system_dirs: None) -> None:
    folder = write_mnist_like(tmp_path / "m")
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="Incomplete.*train-labels-idx1-ubyte"):
        load_dataset("mnist", "train", root=folder)
    assert len(load_dataset("mnist", "test", root=folder)) == 6


@pytest.mark.parametrize("layout", ["itself", "parent"])
def test_robens_data_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_system_dirs: None, layout: str
) -> None:
    base = tmp_path / "data"
    write_mnist_like(base if layout == "itself" else base / "fashion-mnist", n_train=14)
    monkeypatch.setenv("ROBENS_DATA", str(base))
    assert len(load_dataset("fashion_mnist", "train")) == 14


def test_search_order_root_then_env_then_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_system_dirs: None
) -> None:
    write_mnist_like(tmp_path / "root", n_test=3)
    write_mnist_like(tmp_path / "env" / "mnist", n_test=4)
    write_mnist_like(Path.home() / ".robens" / "data" / "mnist", n_test=5)
    monkeypatch.setenv("ROBENS_DATA", str(tmp_path / "env"))
    assert len(load_dataset("mnist", "test", root=tmp_path / "root")) == 3
    assert len(load_dataset("mnist", "test")) == 4
    monkeypatch.delenv("ROBENS_DATA")
    assert len(load_dataset("mnist", "test")) == 5


def test_names_and_splits() -> None:
    for alias in ("fashion-mnist", "Fashion_MNIST", "FMNIST", " fashionmnist "):
        assert canonical_name(alias) == "fashion-mnist"
    assert canonical_name("CIFAR-10") == "cifar10"
    with pytest.raises(DatasetError, match="fashion-mnist, mnist, cifar10, synthetic"):
        load_dataset("imagenet")
    with pytest.raises(DatasetError, match="split"):
        load_dataset("synthetic", "val")
    with pytest.raises(DatasetError, match="size"):
        load_dataset("synthetic", size=0)


def test_load_dataset_size_subsets(tmp_path: Path) -> None:
    folder = write_mnist_like(tmp_path / "m", n_train=30)
    a = load_dataset("mnist", root=folder, size=10, seed=3)
    b = load_dataset("mnist", root=folder, size=10, seed=3)
    c = load_dataset("mnist", root=folder, size=10, seed=4)
    assert len(a) == 10 and torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    assert len(load_dataset("mnist", root=folder, size=30)) == 30
    with pytest.raises(DatasetError, match="larger than the split"):  # issue #16: no fallback
        load_dataset("mnist", root=folder, size=100)


# ----------------------------------------------------------------------------- CIFAR-10


def _cifar_batch(n: int, seed: int, labels_as_array: bool = False) -> dict[bytes, object]:
    rng = np.random.default_rng(seed)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    return {
        b"batch_label": b"fake batch",
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"labels": np.array(labels, dtype=np.int64) if labels_as_array else labels,
        b"filenames": [b"img_%d.png" % i for i in range(n)],
    }


def write_cifar(folder: Path, n: int = 4, protocol: int = 2, labels_as_array: bool = False):
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {}
    for seed, name in enumerate(names):
        batches[name] = _cifar_batch(n if name != "test_batch" else n + 1, seed, labels_as_array)
        with open(folder / name, "wb") as fh:
            pickle.dump(batches[name], fh, protocol=protocol)
    return batches


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("labels_as_array", [False, True])
def test_cifar_batch_round_trip(tmp_path: Path, protocol: int, labels_as_array: bool) -> None:
    batches = write_cifar(tmp_path, 3, protocol, labels_as_array)
    images, labels = read_cifar_batch(tmp_path / "data_batch_2")
    data = batches["data_batch_2"][b"data"]
    assert images.shape == (3, 3, 32, 32) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and list(labels) == list(batches["data_batch_2"][b"labels"])
    # pixel (c, h, w) of image i is data[i, c * 1024 + h * 32 + w]
    assert images[1, 2, 5, 7] == data[1, 2 * 1024 + 5 * 32 + 7]


@pytest.mark.parametrize("layout", ["subfolder", "direct"])
def test_load_cifar10(tmp_path: Path, layout: str) -> None:
    folder = tmp_path / "cifar"
    batches = write_cifar(folder / "cifar-10-batches-py" if layout == "subfolder" else folder)
    train = load_dataset("cifar10", "train", root=folder)
    test = load_dataset("CIFAR-10", "test", root=folder)
    assert (len(train), len(test)) == (20, 5)
    assert train.in_shape == (3, 32, 32) and train.class_names[0] == "airplane"
    expected = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    np.testing.assert_array_equal(train.images.reshape(20, -1).numpy(), expected)
    assert test.labels.tolist() == batches["test_batch"][b"labels"]


def test_cifar_missing_batch(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="data_batch_3"):
        load_dataset("cifar10", "train", root=tmp_path)


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda b: b.update({b"data": np.zeros((2, 100), np.uint8)}), "3072"),
        (lambda b: b.update({b"data": np.zeros((2, 3072), np.float32)}), "uint8"),
        (lambda b: b.update({b"labels": [0, 10]}), "labels lie in"),
        (lambda b: b.update({b"labels": [0]}), "2 images but 1 labels"),
        (lambda b: b.pop(b"labels"), "lacks the keys"),
    ],
)
def test_cifar_invalid_batches(tmp_path: Path, edit, needle: str) -> None:
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    edit(batch)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DatasetError, match=needle) as info:
        read_cifar_batch(path)
    assert str(path) in str(info.value)


def test_cifar_garbage_and_non_dict(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"\x80\x02not a pickle at all")
    (tmp_path / "b").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DatasetError, match="not a valid"):
        read_cifar_batch(tmp_path / "a")
    with pytest.raises(DatasetError, match="expected a dict"):
        read_cifar_batch(tmp_path / "b")


class _SystemPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _OpenPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class _EvalPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


@pytest.mark.parametrize("payload", [_SystemPayload, _OpenPayload, _EvalPayload])
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_malicious_pickle_is_refused(tmp_path: Path, payload, protocol: int) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar"
    write_cifar(folder)
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": payload(marker)}
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=protocol))
    with pytest.raises(DatasetError, match="refusing to unpickle"):
        load_dataset("cifar10", "train", root=folder)
    with pytest.raises(DatasetError):
        safe_load(folder / "data_batch_1")
    assert not marker.exists()


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_is_seeded_and_split() -> None:
    a, b = make_synthetic(None, "train"), make_synthetic(None, "train")
    assert len(a) == 2000 and len(make_synthetic(None, "test")) == 500
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(make_synthetic(50, "train", seed=1).images, a.images[:50])
    test = make_synthetic(None, "test")
    assert not torch.equal(test.images, a.images[:500])
    assert a.labels.bincount().tolist() == [200] * 10 and a.images.dtype == torch.uint8
    loaded = load_dataset("synthetic", "train", size=100, seed=2)
    assert len(loaded) == 100 and torch.equal(
        loaded.images, load_dataset("synthetic", "train", size=100, seed=2).images
    )
    assert len(load_dataset("synthetic", "train", size=3000)) == 3000


def test_synthetic_is_learnable() -> None:
    """A nearest-class-mean classifier fit on train already generalizes to test."""
    train, test = load_dataset("synthetic", "train"), load_dataset("synthetic", "test")
    x, y = train.tensors()
    means = torch.stack([x[y == k].mean(0) for k in range(10)]).flatten(1)
    xt, yt = test.tensors()
    pred = torch.cdist(xt.flatten(1), means).argmin(1)
    assert (pred == yt).float().mean() > 0.9


def test_synthetic_other_shapes() -> None:
    ds = make_synthetic(30, "test", in_shape=(3, 32, 32), num_classes=3)
    assert ds.images.shape == (30, 3, 32, 32) and ds.num_classes == 3
    with pytest.raises(DatasetError):
        make_synthetic(0, "train")


# ----------------------------------------------------------------------------- ImageDataset


@pytest.fixture
def small() -> ImageDataset:
    images = torch.arange(37 * 4, dtype=torch.int64).remainder(256).to(torch.uint8)
    return ImageDataset(images.reshape(37, 1, 2, 2), torch.arange(37) % 5, 5, "toy", "train")


def test_dataset_basics(small: ImageDataset) -> None:
    assert len(small) == 37 and small.in_shape == (1, 2, 2)
    assert small.class_names == ["0", "1", "2", "3", "4"] and "n=37" in repr(small)
    x, y = small.tensors()
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (37, 1, 2, 2)
    assert 0 <= x.min() and x.max() <= 1 and small.images.dtype == torch.uint8
    torch.testing.assert_close(x * 255, small.images.float())
    x2, y2 = small.tensors(torch.tensor([3, 1]))
    assert y2.tolist() == [3, 1] and torch.equal(x2, x[[3, 1]])


def test_dataset_validation() -> None:
    imgs = torch.zeros(3, 1, 2, 2, dtype=torch.uint8)
    with pytest.raises(DatasetError, match="uint8"):
        ImageDataset(imgs.float(), torch.zeros(3, dtype=torch.int64), 2)
    with pytest.raises(DatasetError, match="3 images but 2 labels"):
        ImageDataset(imgs, torch.zeros(2, dtype=torch.int64), 2)
    with pytest.raises(DatasetError, match="labels lie in"):
        ImageDataset(imgs, torch.tensor([0, 1, 2]), 2)
    with pytest.raises(DatasetError, match="class names"):
        ImageDataset(imgs, torch.tensor([0, 1, 1]), 2, class_names=["a"])
    assert ImageDataset(imgs, torch.tensor([0, 1, 1], dtype=torch.uint8), 2).labels.dtype == (
        torch.int64
    )


def test_subset(small: ImageDataset) -> None:
    a, b = small.subset(10, seed=1), small.subset(10, seed=1)
    assert len(a) == 10 and torch.equal(a.images, b.images) and a.name == "toy"
    assert len(set(a.images[:, 0, 0, 0].tolist())) == 10  # distinct samples
    assert not torch.equal(a.labels, small.subset(10, seed=2).labels) or not torch.equal(
        a.images, small.subset(10, seed=2).images
    )
    assert small.subset(None) is small and small.subset(37) is small and small.subset(99) is small
    for bad in (0, -3, True, 2.5):
        with pytest.raises(DatasetError):
            small.subset(bad)


def test_indices(small: ImageDataset) -> None:
    sub = small.indices(torch.tensor([5, 0, 5]))
    assert sub.labels.tolist() == [0, 0, 0] and torch.equal(sub.images[0], small.images[5])
    mask = small.labels == 2
    assert len(small.indices(mask)) == int(mask.sum())
    with pytest.raises(DatasetError, match="out of range"):
        small.indices(torch.tensor([37]))
    with pytest.raises(DatasetError):
        small.indices(torch.tensor([0.5]))


def test_batches(small: ImageDataset) -> None:
    plain = list(small.batches(10))
    assert [len(y) for _, y in plain] == [10, 10, 10, 7] == [len(x) for x, _ in plain]
    assert torch.cat([y for _, y in plain]).tolist() == small.labels.tolist()
    assert small.num_batches(10) == 4 and small.num_batches(10, drop_last=True) == 3
    shuffled = list(small.batches(8, shuffle=True, generator=torch.Generator().manual_seed(0)))
    again = list(small.batches(8, shuffle=True, generator=torch.Generator().manual_seed(0)))
    seen = torch.cat([x[:, 0, 0, 0] for x, _ in shuffled])
    assert sorted((seen * 255).round().long().tolist()) == small.images[:, 0, 0, 0].long().tolist()
    assert not torch.equal(seen, torch.cat([x[:, 0, 0, 0] for x, _ in plain]))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(shuffled, again, strict=True))
    dropped = list(small.batches(8, shuffle=True, drop_last=True))
    assert [len(y) for _, y in dropped] == [8, 8, 8, 8]
    x, _ = plain[0]
    assert x.dtype == torch.float32 and x.max() <= 1
    with pytest.raises(DatasetError):
        next(small.batches(0))


def test_bootstrap(small: ImageDataset) -> None:
    a = small.bootstrap(torch.Generator().manual_seed(5))
    b = small.bootstrap(torch.Generator().manual_seed(5))
    assert len(a) == len(small) and torch.equal(a.images, b.images)
    keys = a.images[:, 0, 0, 0].tolist()
    assert len(set(keys)) < len(keys)  # with replacement: 37 draws of 37 repeat w.p. ~1
    assert set(keys) <= set(small.images[:, 0, 0, 0].tolist())


# ----------------------------------------------------------------------------- downloads


def _mirror(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A file:// mirror holding a tiny MNIST-like dataset, and its checksums."""
    src = write_mnist_like(tmp_path / "mirror")
    return src.as_uri(), {p.name: file_md5(p) for p in sorted(src.iterdir())}


def test_download_from_file_mirror(tmp_path: Path, no_system_dirs: None) -> None:
    url, sums = _mirror(tmp_path)
    dest = tmp_path / "dest"
    out = download_dataset("mnist", root=dest, base_url=url, progress=False, checksums=sums)
    assert out == dest and sorted(p.name for p in dest.iterdir()) == sorted(sums)
    assert len(load_dataset("mnist", "train", root=dest)) == 12
    # files already verified are kept: a dead mirror is not contacted
    dead = (tmp_path / "dead").as_uri()
    download_dataset("mnist", root=dest, base_url=dead, progress=False, checksums=sums)


def test_download_default_folder(tmp_path: Path) -> None:
    url, sums = _mirror(tmp_path)
    out = download_dataset("fmnist", base_url=url, progress=False, checksums=sums)
    assert out == Path.home() / ".robens" / "data" / "fashion-mnist"
    assert len(load_dataset("fashion-mnist", "test", root=out)) == 6


def test_download_checksum_mismatch_deletes_file(tmp_path: Path) -> None:
    url, sums = _mirror(tmp_path)
    bad = dict(sums, **{"t10k-labels-idx1-ubyte.gz": "0" * 32})
    dest = tmp_path / "dest"
    with pytest.raises(DatasetError, match="checksum mismatch.*deleted"):
        download_dataset("mnist", root=dest, base_url=url, progress=False, checksums=bad)
    assert not (dest / "t10k-labels-idx1-ubyte.gz").exists()
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]


def test_download_replaces_corrupt_existing_file(tmp_path: Path) -> None:
    url, sums = _mirror(tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "train-images-idx3-ubyte.gz").write_bytes(b"junk")
    download_dataset("mnist", root=dest, base_url=url, progress=False, checksums=sums)
    assert file_md5(dest / "train-images-idx3-ubyte.gz") == sums["train-images-idx3-ubyte.gz"]


def test_download_unreachable(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="could not download"):
        download_dataset(
            "mnist", root=tmp_path / "d", base_url=(tmp_path / "none").as_uri(), progress=False
        )
    with pytest.raises(DatasetError, match="not a valid URL"):
        download_dataset("mnist", root=tmp_path / "d", base_url="nonsense", progress=False)
    assert not [p for p in (tmp_path / "d").iterdir()]
    with pytest.raises(DatasetError, match="nothing to fetch"):
        download_dataset("synthetic", root=tmp_path)


def _tarball(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_download_cifar_tarball(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    write_cifar(tmp_path / "src" / "cifar-10-batches-py")
    mirror.mkdir()
    members = {
        f"cifar-10-batches-py/{p.name}": p.read_bytes()
        for p in (tmp_path / "src" / "cifar-10-batches-py").iterdir()
    }
    md5 = _tarball(mirror / "cifar-10-python.tar.gz", members)
    dest = tmp_path / "dest"
    download_dataset(
        "cifar10",
        root=dest,
        base_url=mirror.as_uri(),
        progress=False,
        checksums={"cifar-10-python.tar.gz": md5},
    )
    assert len(load_dataset("cifar10", "train", root=dest)) == 20
    assert len(load_dataset("cifar10", "test", root=dest)) == 5


@pytest.mark.parametrize(
    "members, links",
    [
        ({"../escape.txt": b"x"}, None),
        ({"ok/../../escape.txt": b"x"}, None),
        ({"/tmp/abs-escape.txt": b"x"}, None),
        ({"ok.txt": b"x"}, {"link": "/etc/passwd"}),
    ],
)
def test_safe_extract_rejects_traversal(tmp_path: Path, members, links) -> None:
    dest = tmp_path / "a" / "b"
    dest.mkdir(parents=True)
    _tarball(tmp_path / "evil.tar.gz", members, links)
    with pytest.raises(DatasetError, match="refusing"):
        safe_extract(tmp_path / "evil.tar.gz", dest)
    assert not (tmp_path / "a" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()
    assert list(dest.iterdir()) == []


def test_safe_extract_corrupt_archive(tmp_path: Path) -> None:
    (tmp_path / "x.tar.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    with pytest.raises(DatasetError, match="not a readable tar"):
        safe_extract(tmp_path / "x.tar.gz", tmp_path)


# ----------------------------------------------------------------------------- info


def test_dataset_info(tmp_path: Path, no_system_dirs: None) -> None:
    folder = write_mnist_like(tmp_path / "m", n_train=9, n_test=4)
    info = dataset_info("mnist", root=folder)
    assert info["folder"] == str(folder) and info["in_shape"] == [1, 28, 28]
    assert info["splits"] == {"train": {"samples": 9}, "test": {"samples": 4}}
    sizes = {f["name"]: f["size"] for f in info["files"]}
    assert (
        sizes["t10k-labels-idx1-ubyte.gz"] == (folder / "t10k-labels-idx1-ubyte.gz").stat().st_size
    )
    missing = dataset_info("fashion-mnist", root=tmp_path / "none")
    assert missing["folder"] is None and "apt-get install -y" in missing["how_to_get"]
    assert str(tmp_path / "none") in missing["searched"]
    assert dataset_info("synthetic")["splits"]["train"]["samples"] == 2000
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    assert "error" in dataset_info("mnist", root=folder)["splits"]["test"]


@needs_fashion
def test_dataset_info_real_fashion() -> None:
    info = dataset_info("fashion-mnist")
    assert info["folder"] == str(FASHION_DIR)
    assert info["splits"] == {"train": {"samples": 60000}, "test": {"samples": 10000}}


def test_download_progress_goes_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url, sums = _mirror(tmp_path)
    download_dataset("mnist", root=tmp_path / "d", base_url=url, progress=True, checksums=sums)
    captured = capsys.readouterr()
    assert captured.out == "" and "100.0%" in captured.err


def test_dataset_info_cifar(tmp_path: Path) -> None:
    write_cifar(tmp_path / "c" / "cifar-10-batches-py")
    info = dataset_info("cifar10", root=tmp_path / "c")
    assert info["splits"] == {"train": {"samples": 20}, "test": {"samples": 5}}
    assert info["in_shape"] == [3, 32, 32] and info["class_names"][-1] == "truck"
    assert "cifar-10-batches-py/test_batch" in {f["name"] for f in info["files"]}
