"""Model labels of records: homogeneous ensembles as ``3xlenet``, mixed ones by their members."""

from __future__ import annotations

from robens.config import validate_config
from robens.evaluate.clean import evaluate_clean_checkpoint
from robens.records import model_label, parse_model_label, read_json_records, records_from_meta
from robens.report.build import build_report
from robens.report.runs import load_runs
from robens.training import Trainer
from tests.conftest import small_config


def _meta(**model):
    return {"config": {"name": "m", "model": model}, "seed": 0}


def test_labels_name_every_architecture():
    assert model_label(_meta(arch="lenet", members=3)) == "3xlenet"  # as before
    assert model_label(_meta(arch="lenet", archs=["conv3", "lenet"], members=2)) == "conv3+lenet"
    mixed = _meta(arch="lenet", archs=["mycnn", "mymlp", "mycnn"], members=3)
    assert model_label(mixed) == "2xmycnn+mymlp"
    assert model_label(_meta(arch="conv3", archs=["lenet", "lenet"], members=2)) == "2xlenet"
    specs = {"model": {"members": [{"name": "conv3"}, {"name": "conv4"}]}}
    assert model_label(specs) == "conv3+conv4"  # no config: the member specs
    assert records_from_meta(mixed)["model"] == "2xmycnn+mymlp"


def test_labels_parse_back_to_member_count_and_architecture():
    assert parse_model_label("3xlenet") == (3, "lenet")
    assert parse_model_label("conv3+lenet") == (2, "conv3+lenet")
    assert parse_model_label("2xmycnn+mymlp") == (3, "2xmycnn+mymlp")
    assert parse_model_label("2xresnet20") == (2, "resnet20")
    assert parse_model_label("lenet") is None and parse_model_label(None) is None


def test_mixed_ensemble_is_labelled_by_its_members_in_records_and_report(tmp_path):
    cfg = validate_config(small_config(
        tmp_path, **{"model.archs": ["conv3", "lenet"], "data.train_size": 100,
                     "data.test_size": 50}))
    result = Trainer(cfg, progress=False, echo=None).fit()
    summary = evaluate_clean_checkpoint(result.checkpoint, test_size=50, out=result.run_dir)
    records = read_json_records(summary["records_path"])
    assert records and {r["model"] for r in records} == {"conv3+lenet"}
    run = load_runs([result.run_dir])[0]
    assert run.info["members"] == 2 and run.info["arch"] == "conv3+lenet"
    build_report(result.run_dir, tmp_path / "report")
    assert "conv3+lenet" in (tmp_path / "report" / "summary.md").read_text()
    assert "2xlenet" not in (tmp_path / "report" / "index.html").read_text()
