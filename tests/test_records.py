"""Typed records: one threat-model enumeration, one writer, readers that accept older runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from robens.records import (
    SCHEMA_VERSION,
    ThreatModel,
    make_record,
    normalize_threat,
    read_json_records,
    write_json_records,
)

FIXTURE = Path(__file__).parent / "fixtures" / "old_run"
BASE = dict(method="m", dataset="synthetic", model="2xlenet")


def test_threat_model_spellings_map_to_the_enumeration():
    assert normalize_threat("white-box") == ("white_box", None)
    assert normalize_threat("white_box") == ("white_box", None)
    assert normalize_threat("transfer from runs/s") == ("transfer", "runs/s")
    assert normalize_threat(ThreatModel.UNIVERSAL) == ("universal", None)
    assert normalize_threat(None) == (None, None)
    assert {t.value for t in ThreatModel} == {
        "white_box", "transfer", "universal", "member_transfer", "gaas", "noise", "rotation",
        "none"}
    with pytest.raises(ValueError, match="unknown threat model"):
        normalize_threat("grey-box")


def test_make_record_is_typed_and_versioned():
    r = make_record(**BASE, metric="robust_accuracy", value=0.5, threat_model="transfer from x")
    assert r["threat_model"] == "transfer" and r["surrogate"] == "x"
    assert r["schema_version"] == SCHEMA_VERSION


def test_the_writer_refuses_a_record_that_is_not_one(tmp_path):
    with pytest.raises(ValidationError):
        write_json_records(tmp_path / "r.jsonl", [{"metric": "x", "value": 1.0}])
    with pytest.raises(ValidationError):
        write_json_records(tmp_path / "r.jsonl", [
            make_record(**BASE, metric="x", value=1.0) | {"threat_model": "grey"}])
    assert not (tmp_path / "r.jsonl").exists()


def test_old_format_records_are_read_in_the_current_schema():
    recs = read_json_records(FIXTURE / "attack-pgd-eps0.1.json")
    assert [r["threat_model"] for r in recs] == ["white_box"] * 3
    assert all(r["schema_version"] == 1 for r in recs)
    (t,) = read_json_records(FIXTURE / "attack-fgsm-eps0.1.json")
    assert t["threat_model"] == "transfer" and t["surrogate"] == "runs/surrogate"


def test_an_old_run_folder_still_reports(tmp_path):
    from robens.report import build_report
    from robens.report.runs import load_runs
    from robens.report.tables import robust_columns

    run = tmp_path / "old"
    shutil.copytree(FIXTURE, run)
    cols = robust_columns(load_runs([run]))
    assert ("white_box", "pgd", 0.1) in cols and ("transfer", "fgsm", 0.1) in cols
    index = build_report(run, tmp_path / "report")
    summary = (index.parent / "summary.md").read_text()
    assert "WB pgd 0.1 %" in summary and "12.00" in summary


def test_robens_attack_lands_in_the_reports_white_box_panel(tmp_path):
    from conftest import small_config

    from robens.cli import main
    from robens.config import validate_config
    from robens.report.runs import load_runs
    from robens.report.tables import robust_columns, summary_table
    from robens.training import Trainer

    cfg = validate_config(small_config(tmp_path, **{"training.threads": 1}))
    Trainer(cfg, progress=False, echo=None).fit()
    run = tmp_path / "run"
    argv = ["attack", str(run), "--attack", "fgsm", "--eps", "0.1", "--test-size", "50"]
    assert main(argv) == 0
    assert main([*argv, "--surrogate", str(run), "-o", str(run / "attack-transfer.json")]) == 0
    assert main(["report", str(run), "-o", str(tmp_path / "report")]) == 0
    runs = load_runs([run])
    cols = robust_columns(runs)
    assert ("white_box", "fgsm", 0.1) in cols and ("transfer", "fgsm", 0.1) in cols
    (wb,) = runs[0].select("robust_accuracy", threat_model="white_box")
    (tr,) = runs[0].select("robust_accuracy", threat_model="transfer")
    assert tr["surrogate"] == str(run) and wb.get("surrogate") is None
    table = summary_table(runs)
    assert "WB fgsm 0.1 %" in table.headers and "transfer fgsm 0.1 %" in table.headers
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "WB fgsm 0.1 %" in summary
