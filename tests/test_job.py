"""A job of several ensembles (``ensembles:`` in a config, robens/job.py): each ensemble is the
shared base plus its overrides, trained into ``<job>/<name>``; the suite's ``train:`` surrogate
is trained once and shared, so the transfer examples are crafted once and both ensembles are
attacked with the same adversarial images; one report puts the ensembles side by side with a
paired comparison. Bad job files are one ``error:`` line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from robens.cli import main
from robens.errors import ConfigError
from robens.job import ensemble_configs

ROOT = Path(__file__).resolve().parents[1]

BASE = {
    "name": "tiny-job", "seed": 0,
    "data": {"dataset": "synthetic", "train_size": 200, "test_size": 80, "batch_size": 50},
    "model": {"arch": "lenet", "members": 2, "activation": "leaky_relu"},
    "objective": "ce",
    "training": {"epochs": 1, "threads": 1},
}
SUITE = {
    "name": "tiny-job", "test_size": 40, "batch_size": 20, "seed": 0, "per_sample": True,
    "surrogates": {"surrogate": {"train": {"seed": 1, "objective": "ce",
                                           "data": {"train_size": 100}}}},
    "attacks": [
        {"attack": "fgsm", "eps": [0.1], "masking_checks": False},
        {"attack": "fgsm", "eps": [0.1], "threat": "transfer", "surrogate": "surrogate"},
    ],
}


def _cli(*argv: str) -> int:
    saved, threads = sys.argv, torch.get_num_threads()
    sys.argv = ["robens", *argv]
    torch.set_num_threads(1)
    try:
        return main(list(argv))
    finally:
        sys.argv = saved
        torch.set_num_threads(threads)


def test_ensembles_are_the_base_plus_their_overrides():
    job = {**BASE, "output_dir": "runs/j",
           "ensembles": {"baseline": {}, "gal": {"objective": "ce + 0.5*gal", "seed": 3}}}
    cfgs = ensemble_configs(job, "job.yaml")
    assert list(cfgs) == ["baseline", "gal"]
    assert cfgs["baseline"].objective == "ce" and cfgs["gal"].objective == "ce + 0.5*gal"
    assert cfgs["gal"].seed == 3 and cfgs["baseline"].seed == 0
    assert cfgs["baseline"].output_dir == str(Path("runs/j") / "baseline")
    assert cfgs["gal"].name == "tiny-job-gal"
    assert cfgs["gal"].data.train_size == 200  # the shared budget


@pytest.mark.parametrize(("ensembles", "needle"), [
    ([], "must map each ensemble"),
    ({}, "must map each ensemble"),
    ({"a/b": {}}, "plain folder name"),
    ({"gal": "ce"}, "mapping of overrides"),
    ({"gal": {"output_dir": "x"}}, "sets 'output_dir'"),
    ({"gal": {"objective": "ce + 0.5*nosuchterm"}}, "gal"),
])
def test_bad_job_files_are_one_error_line(tmp_path, capsys, ensembles, needle):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({**BASE, "output_dir": str(tmp_path / "out"),
                                    "ensembles": ensembles}))
    rc = _cli("run", str(path), "--no-progress")
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    assert err.startswith("error: ") and needle in err, err
    assert not (tmp_path / "out").exists()  # refused before any work
    with pytest.raises(ConfigError):
        ensemble_configs(yaml.safe_load(path.read_text()), str(path))


def test_set_applies_to_every_ensemble_and_cannot_change_them(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({**BASE, "output_dir": str(tmp_path / "out"),
                                    "ensembles": {"a": {}}}))
    rc = _cli("run", str(path), "--set", "ensembles.b={}", "--no-progress")
    err = capsys.readouterr().err
    assert rc == 2 and "cannot change 'ensembles'" in err, err


def test_a_job_trains_both_shares_the_surrogate_and_reports_them_side_by_side(tmp_path):
    job_dir = tmp_path / "job"
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({**BASE, "output_dir": str(job_dir), "ensembles": {
        "baseline": {}, "gal": {"objective": "ce + 0.5*gal"}}}))
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(SUITE))
    assert _cli("run", str(path), "--suite", str(tmp_path / "suite.yaml"), "--no-progress",
                "--set", "training.epochs=1") == 0
    for name in ("baseline", "gal"):
        assert (job_dir / name / "checkpoint.safetensors").is_file()
        assert (job_dir / name / "results.jsonl").is_file()
    # one surrogate for the job, trained from the shared base (objective ce), not per ensemble
    assert [p.name for p in (job_dir / "surrogates").iterdir()] == ["surrogate"]
    assert not (job_dir / "baseline" / "surrogates").exists()
    assert not (job_dir / "gal" / "surrogates").exists()
    cache = list((job_dir / "surrogates" / "surrogate" / "transfer-cache").glob("*.safetensors"))
    assert len(cache) == 1  # the transfer examples were crafted once, for both ensembles
    # both ensembles' transfer outcomes are on the same images
    samples = [sorted((job_dir / n / "suite" / "samples").glob("transfer-fgsm-*.npz"))
               for n in ("baseline", "gal")]
    assert all(len(s) == 1 for s in samples), samples
    with np.load(samples[0][0]) as a, np.load(samples[1][0]) as b:
        assert np.array_equal(a["index"], b["index"])
    page = (job_dir / "report" / "index.html").read_text()
    assert "tiny-job-baseline" in page and "tiny-job-gal" in page
    assert 'id="paired"' in page and "McNemar" in page
    assert "tiny-job-gal against tiny-job-baseline" in page
    # a rerun skips everything that is done
    assert _cli("run", str(path), "--suite", str(tmp_path / "suite.yaml"), "--no-progress",
                "--set", "training.epochs=1") == 0


def test_the_main_config_is_a_job_of_a_baseline_and_a_gal_ensemble():
    data = yaml.safe_load((ROOT / "configs" / "main.yaml").read_text())
    cfgs = ensemble_configs(data, "configs/main.yaml")
    assert set(cfgs) == {"baseline", "gal"}
    assert "gal" in cfgs["gal"].objective and cfgs["baseline"].objective == "ce"
    a, b = (c.model_dump() for c in cfgs.values())
    differ = {k for k in a if a[k] != b[k]}
    assert differ == {"name", "objective", "output_dir"}  # the same budget otherwise
