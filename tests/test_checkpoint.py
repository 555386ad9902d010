"""Checkpoints: bit-exact round trip, atomic writes, refusal of edited/truncated files."""

from __future__ import annotations

import json

import pytest
import torch

from robens.checkpoint import (
    load_checkpoint,
    module_from_tensors,
    module_to_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
)
from robens.errors import CheckpointError
from robens.models import build_model


def test_round_trip_bit_for_bit(tmp_path):
    model = build_model("resnet20", in_shape=(3, 32, 32))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(4, 3, 32, 32)).sum().backward()
    opt.step()
    tensors = module_to_tensors(model)
    ot, om = optimizer_to_tensors(opt)
    tensors.update(ot)
    save_checkpoint(tmp_path / "c.safetensors", tensors, {"epoch": 3, "note": "x"})
    back, meta = load_checkpoint(tmp_path / "c.safetensors")
    assert meta["epoch"] == 3 and meta["format"] == "robens-checkpoint"
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v.detach().cpu())
    clone = build_model("resnet20", in_shape=(3, 32, 32))
    module_from_tensors(clone, back)
    opt2 = torch.optim.Adam(clone.parameters(), lr=1e-3)
    optimizer_from_tensors(opt2, back, om)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    for idx in s1["state"]:
        for key, val in s1["state"][idx].items():
            assert torch.equal(torch.as_tensor(val), torch.as_tensor(s2["state"][idx][key]))


def test_truncated_and_edited_refused(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"model/w": torch.arange(100.0)}, {"epoch": 1})
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) - 37])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "trunc.safetensors")
    edited = bytearray(data)
    edited[-5] ^= 0xFF  # flip bits inside the tensor payload
    (tmp_path / "edit.safetensors").write_bytes(bytes(edited))
    with pytest.raises(CheckpointError, match="digest mismatch"):
        load_checkpoint(tmp_path / "edit.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 3)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "junk.safetensors")


def test_foreign_safetensors_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(tmp_path / "f.safetensors"))
    with pytest.raises(CheckpointError, match="without robens metadata"):
        load_checkpoint(tmp_path / "f.safetensors")


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"a": torch.ones(2)}, {"epoch": 1})
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, {"a": torch.zeros(2)}, {"epoch": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


def test_metadata_is_plain_json(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", {"a": torch.ones(1)}, {"epoch": 1})
    n = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["robens"])
    assert {"sha256", "versions", "epoch"} <= set(meta)
    assert "torch" in meta["versions"]


def test_edited_metadata_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", {"a": torch.ones(2)}, {"epoch": 1})
    data = path.read_bytes()
    edited = data.replace(b'\\"epoch\\": 1', b'\\"epoch\\": 7')
    assert edited != data
    path.write_bytes(edited)
    with pytest.raises(CheckpointError, match="digest mismatch"):
        load_checkpoint(path)
