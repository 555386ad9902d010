"""Config validation: unknown keys, wrong types and impossible values name the key."""

from __future__ import annotations

import pytest

from robens.config import load_config, load_yaml, parse_set_option, validate_config
from robens.errors import ConfigError
from robens.job import ensemble_configs, is_job


def test_defaults_valid():
    cfg = validate_config({})
    assert cfg.model.members == 3 and cfg.optimizer.name == "adam"


@pytest.mark.parametrize(
    "data, key",
    [
        ({"modle": {}}, "modle"),
        ({"model": {"memebrs": 3}}, "model.memebrs"),
        ({"model": {"members": 0}}, "model.members"),
        ({"model": {"members": "three"}}, "model.members"),
        ({"optimizer": {"lr": -1}}, "optimizer.lr"),
        ({"training": {"adversarial": {"eps": -0.1}}}, "training.adversarial.eps"),
        ({"training": {"adversarial": {"eps": 1.5}}}, "training.adversarial.eps"),
        ({"model": {"members": 2, "weights": [0.3, 0.3]}}, "model"),
        ({"model": {"members": 2, "weights": [0.5]}}, "model"),
        ({"optimizer": {"name": "rmsprop"}}, "optimizer.name"),
        ({"schedule": {"milestones": [5, 2]}}, "schedule.milestones"),
    ],
)
def test_bad_values_name_the_key(data, key):
    with pytest.raises(ConfigError) as info:
        validate_config(data, source="x.yaml")
    assert key in str(info.value)


def test_weights_message():
    with pytest.raises(ConfigError, match="sum to 1"):
        validate_config({"model": {"members": 2, "weights": [0.3, 0.3]}})


def test_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {members: 3\n  arch: [")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(lst)
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_config(evil)


def test_overrides_and_set_option(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  members: 2\n")
    cfg = load_config(p, {"optimizer.lr": 0.01, "model.arch": "conv3"})
    assert cfg.optimizer.lr == 0.01 and cfg.model.arch == "conv3" and cfg.model.members == 2
    assert parse_set_option("training.epochs=5") == ("training.epochs", 5)
    assert parse_set_option("model.weights=[0.5, 0.5]") == ("model.weights", [0.5, 0.5])
    with pytest.raises(ConfigError, match="key=value"):
        parse_set_option("nonsense")


def test_every_config_file_is_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.rglob("*.yaml"))
    assert files, "configs/ has no recipes"
    for f in files:
        if "suite" in f.name or f.parent.name in ("suites", "sweeps", "reproduce"):
            continue
        data = load_yaml(f)
        if is_job(data):  # configs/main.yaml: a job of several ensembles, each validated
            ensemble_configs(data, str(f))
        else:
            load_config(f)
