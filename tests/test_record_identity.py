"""Record identity (#15): no result overwrites another; the report shows each once, with its n."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from robens.records import (
    RecordSelection,
    dedupe_records,
    identity_key,
    make_record,
    merge_json_records,
    read_json_records,
    record_identity,
)
from tests.conftest import small_config

BASE = dict(method="m", dataset="synthetic", model="2xlenet", seed=0, config_hash="abc")
FIXTURE = Path(__file__).parent / "fixtures" / "old_run"


def _robust(**over):
    fields = dict(BASE, metric="robust_accuracy", value=0.5, attack="pgd", eps=0.1, n=100,
                  threat_model="white_box", steps=10)
    fields.update(over)
    return make_record(**fields)


def test_identity_covers_threat_surrogate_parameters_sample_and_seed():
    a = _robust()
    different = [
        _robust(threat_model="transfer", surrogate="runs/s"),
        _robust(threat_model="transfer", surrogate="runs/t"),
        _robust(steps=20),
        _robust(n=10_000),
        _robust(sample_seed=1),
        _robust(seed=1),
        _robust(eps=0.2),
        _robust(metric="clean_accuracy"),
    ]
    keys = {identity_key(r) for r in [a, *different]}
    assert len(keys) == len(different) + 1
    # what describes a result without telling it apart: the value, versions, epoch, warnings
    same = _robust(value=0.25, epoch=3, complete=False, warnings=["x"], versions={"torch": "0"})
    assert identity_key(same) == identity_key(a)
    assert "value" not in record_identity(a) and record_identity(a)["n"] == 100


def test_merge_keeps_other_identities_and_replaces_the_same_one(tmp_path):
    path = tmp_path / "records.jsonl"
    full = make_record(**BASE, metric="clean_accuracy", value=0.9, n=500)
    merge_json_records(path, [full])
    small = make_record(**BASE, metric="clean_accuracy", value=0.8, n=100, sample_seed=0)
    merge_json_records(path, [small])
    assert sorted(r["n"] for r in read_json_records(path)) == [100, 500]
    again = make_record(**BASE, metric="clean_accuracy", value=0.85, n=100, sample_seed=0)
    merge_json_records(path, [again])
    recs = read_json_records(path)
    assert sorted((r["n"], r["value"]) for r in recs) == [(100, 0.85), (500, 0.9)]


def test_selection_prefers_the_largest_sample_then_a_finished_later_checkpoint():
    sel = RecordSelection()
    small = make_record(**BASE, metric="clean_accuracy", value=0.8, n=100)
    big = make_record(**BASE, metric="clean_accuracy", value=0.9, n=500, epoch=1,
                      complete=False)
    done = make_record(**BASE, metric="clean_accuracy", value=0.7, n=500, epoch=2,
                       complete=True)
    sel.records = [small, big]
    assert sel.best("clean_accuracy") is big and sel.value("clean_accuracy") == 0.9
    sel.records = [small, big, done]
    assert sel.best("clean_accuracy") is done
    # the same identity read twice counts once; the later-trained checkpoint's result wins
    assert dedupe_records([big, done, small]) == [done, small]


def test_the_weighted_accuracy_uses_the_clean_figure_the_report_shows(tmp_path):
    from robens.report.runs import load_runs

    run = tmp_path / "run"
    suite = dict(BASE, suite="s", eval_seed=0)
    merge_json_records(run / "records.jsonl", [
        make_record(**BASE, metric="clean_accuracy", value=0.9, n=10_000)])
    merge_json_records(run / "results.jsonl", [
        make_record(**suite, metric="clean_accuracy", value=0.6, n=1000, unit="clean-x"),
        make_record(**suite, metric="robust_accuracy", value=0.3, n=1000, attack="uap",
                    eps=0.1, threat_model="universal", unit="uap-x"),
        make_record(**suite, metric="weighted_accuracy", value=0.45, n=1000, attack="uap",
                    threat_model="universal", unit="derived-weighted-accuracy"),
    ])
    (r,) = load_runs([run])
    assert r.clean() == 0.9
    assert r.value("weighted_accuracy") == pytest.approx(0.5 * 0.9 + 0.5 * 0.3)
    # every record is still there, each once, tagged with its file
    assert len(r.records) == 4
    assert {x["source_file"] for x in r.records} == {"records.jsonl", "results.jsonl"}


def test_an_old_record_and_a_new_one_of_another_sample_are_both_reported(tmp_path):
    from robens.report.runs import load_runs

    run = tmp_path / "old"
    shutil.copytree(FIXTURE, run)
    old = read_json_records(run / "attack-pgd-eps0.1.json")
    new = [dict(r, n=7, sample_seed=0, schema_version=3, epoch=1, complete=True) for r in old]
    merge_json_records(run / "attack-pgd-eps0.1-white_box-n7-abc.json", new)
    (r,) = load_runs([run])
    wb = r.select("robust_accuracy", threat_model="white_box", attack="pgd")
    assert len(wb) == 2 and r.best("robust_accuracy", threat_model="white_box")["n"] != 7


def _report_rows(summary_md: str) -> list[dict[str, str]]:
    """The rows of the report's "Every record read" table (cells stripped)."""
    lines = summary_md.split("### Every record read", 1)[1].strip().splitlines()
    table = []
    for ln in lines:
        if not ln.startswith("|"):
            break
        table.append([c.strip() for c in ln.strip("|").split("|")])
    head = table[0]
    return [dict(zip(head, cells, strict=True)) for cells in table[2:]]


def test_white_box_transfer_and_a_small_evaluation_never_replace_each_other(tmp_path):
    """Acceptance 2 of #15, through the CLI on one checkpoint."""
    from robens.cli import main
    from robens.config import validate_config
    from robens.report.runs import load_runs
    from robens.training import Trainer

    cfg = validate_config(small_config(tmp_path, **{"training.threads": 1}))
    Trainer(cfg, progress=False, echo=None).fit()
    run = tmp_path / "run"
    attack = ["attack", str(run), "--attack", "fgsm", "--eps", "0.1", "--test-size", "60"]
    assert main(["evaluate", str(run)]) == 0  # every test image (500)
    assert main(attack) == 0
    assert main([*attack, "--surrogate", str(run)]) == 0
    assert main(["evaluate", str(run), "--test-size", "100"]) == 0
    assert main(attack) == 0  # the same white-box attack again: it replaces only itself

    files = sorted(p.name for p in run.glob("attack-*.json"))
    assert len(files) == 2, files
    assert any("-white_box-n60-" in f for f in files) and any("-transfer-n60-" in f for f in files)
    per_file = {f: read_json_records(run / f) for f in files}
    assert all(len(recs) == 3 for recs in per_file.values())  # clean, robust, success rate
    clean = read_json_records(run / "records.jsonl")
    assert sorted({r["n"] for r in clean if r["metric"] == "clean_accuracy"}) == [100, 500]
    assert all(r["epoch"] == 1 and r["complete"] is True for r in clean)

    assert main(["report", str(run), "-o", str(tmp_path / "report")]) == 0
    (r,) = load_runs([run])
    on_disk = len(clean) + sum(len(v) for v in per_file.values())
    assert len(r.records) == on_disk
    rows = _report_rows((tmp_path / "report" / "summary.md").read_text())
    assert len(rows) == on_disk  # each record once
    keyed = [(x["metric"], x["threat model"], x["member"], x["n"], x["file"]) for x in rows]
    assert len(set(keyed)) == len(keyed)
    robust = {(x["threat model"], x["n"]) for x in rows if x["metric"] == "robust_accuracy"}
    assert robust == {("white_box", "60"), ("transfer", "60")}
    ens_clean = [x for x in rows if x["metric"] == "clean_accuracy"]
    assert sorted(x["n"] for x in ens_clean) == ["100", "500", "60", "60"]
    used = [x for x in ens_clean if x["used"] == "yes"]
    assert [x["n"] for x in used] == ["500"]  # the summary's clean figure: the most images
    full = next(x for x in clean if x["metric"] == "clean_accuracy" and x["n"] == 500)
    assert r.clean() == pytest.approx(full["value"])
    json.dumps(rows)  # plain data
