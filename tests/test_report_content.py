"""What the report says beside its numbers: n and 95% Wilson intervals, the attack settings,
definitions of derived metrics, per-member accuracy, example images, the UAP, provenance,
markers where too few eps were measured, and published tables only for their recipes.

``tiny_main_run`` builds a main-job-like run (``robens run``: train, clean evaluation, a suite
with white-box, transfer and universal attacks) on synthetic data in seconds; the browser
test (tests/test_report_browser.py) opens its report in headless Chromium.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from robens.records import make_record, read_json_records, write_json_records
from robens.report import build_report, load_runs, published_tables, summary_table
from robens.report.intervals import cell, interval, settings, weighted_interval
from robens.report.provenance import provenance
from robens.stats import wilson_interval

#: an accuracy cell: percent, [95% interval], n
CELL = re.compile(r"^\d+\.\d{2} \[\d+\.\d, \d+\.\d\] n=\d+$")

TINY_SUITE = {
    "name": "tiny-main",
    "test_size": 40,
    "batch_size": 20,
    "seed": 0,
    "surrogates": {"surrogate": {"train": {"seed": 1, "data": {"train_size": 100}}}},
    "attacks": [
        {"attack": "fgsm", "eps": [0.1], "masking_samples": 10, "square_queries": 10},
        {"attack": "pgd", "eps": [0.1], "params": {"steps": 3}, "masking_checks": False},
        {"attack": "fgsm", "eps": [0.1], "threat": "transfer", "surrogate": "surrogate"},
        {"attack": "uap", "eps": [0.15], "threat": "universal", "fit_size": 40,
         "params": {"iterations": 2, "seeds": 1, "batch_size": 20}},
    ],
}


def tiny_main_run(root: Path) -> Path:
    """``robens run`` of a 2-member LeNet on synthetic data with a main-like suite; returns
    the run folder (its report is ``<run>/report/index.html``)."""
    from robens.cli import main

    config = {
        "name": "tiny-main", "seed": 0,
        "data": {"dataset": "synthetic", "train_size": 200, "test_size": 80, "batch_size": 50},
        "model": {"arch": "lenet", "members": 2, "activation": "relu"},
        "training": {"epochs": 1, "threads": 1},
        "output_dir": str(root / "run"),
    }
    (root / "main.yaml").write_text(yaml.safe_dump(config))
    (root / "suite.yaml").write_text(yaml.safe_dump(TINY_SUITE))
    argv = ["robens", "run", str(root / "main.yaml"), "--suite", str(root / "suite.yaml"),
            "--no-progress"]
    saved, threads = sys.argv, torch.get_num_threads()
    sys.argv = argv  # the command the run folder records
    torch.set_num_threads(1)
    try:
        assert main(argv[1:]) == 0
    finally:
        sys.argv = saved
        torch.set_num_threads(threads)
    return root / "run"


_BUILT: dict[str, Path] = {}


def tiny_main_once(tmp_path_factory) -> Path:
    """:func:`tiny_main_run` once per test session (this file and the browser test share it)."""
    if "run" not in _BUILT:
        _BUILT["run"] = tiny_main_run(tmp_path_factory.mktemp("tiny-main"))
    return _BUILT["run"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tiny_main_once(tmp_path_factory)


# ---------------------------------------------------------------------------- intervals
def test_cell_shows_value_interval_and_n():
    rec = {"value": 0.45, "n": 200}
    lo, hi = wilson_interval(90, 200)
    assert cell(rec) == f"45.00 [{100 * lo:.1f}, {100 * hi:.1f}] n=200"
    assert interval(rec) == (lo, hi)
    assert cell(None) == "—"
    assert cell({"value": 0.5}) == "50.00 (n not recorded)"


def test_weighted_interval_is_conservative_and_covers_the_value():
    clean, uaps = {"value": 0.8, "n": 500}, [{"value": 0.3, "n": 500}, {"value": 0.2, "n": 500}]
    lo, hi = weighted_interval(clean, uaps)
    w = 0.5 * 0.8 + 0.5 * 0.25
    # wider than the plain 95% combination of the parts (Bonferroni over three intervals)
    plain = [interval(r) for r in (clean, *uaps)]
    plain_lo = 0.5 * plain[0][0] + 0.25 * (plain[1][0] + plain[2][0])
    assert lo < plain_lo < w < hi


def test_settings_name_resolved_parameters_and_say_what_is_missing():
    rec = {"eps": 0.1, "param_steps": 10, "param_restarts": 1, "param_alpha": 0.025,
           "loss": "ce", "norm": "linf", "combine_attack": "adaptive"}
    text = settings(rec)
    for part in ("eps 0.1", "steps 10", "restarts 1", "alpha 0.025", "loss ce", "norm linf",
                 "aggregation adaptive"):
        assert part in text
    old = settings({"eps": 0.1, "params": {"steps": 10}})
    assert "steps 10" in old and "not recorded" in old
    assert "queries 5000" in settings({"eps": 0.1, "param_n_queries": 5000})


# ---------------------------------------------------------------------------- the run's report
def test_attack_units_record_members_settings_and_examples(run_dir):
    from robens.factory import load_ensemble

    recs = read_json_records(run_dir / "results.jsonl")
    robust = [r for r in recs if r["metric"] == "robust_accuracy"]
    assert {r["threat_model"] for r in robust} == {"white_box", "transfer", "universal"}
    pgd = next(r for r in robust if r["attack"] == "pgd")
    assert pgd["param_steps"] == 3 and pgd["norm"] == "linf" and pgd["loss"] == "ce"
    assert pgd["param_restarts"] == 1 and pgd["param_alpha"] > 0
    clean = {r["member"]: r["value"] for r in recs if r["metric"] == "member_clean_accuracy"}
    ens, _ = load_ensemble(run_dir / "checkpoint.safetensors")
    for r in robust:
        members = [m for m in recs if m["metric"] == "member_robust_accuracy"
                   and m.get("unit") == r.get("unit")]
        assert sorted(m["member"] for m in members) == [0, 1]
        for m in members:
            assert m["n"] == r["n"] == 40
            if r["threat_model"] != "universal":  # correct clean and attacked: <= clean
                assert m["value"] <= clean[m["member"]] + 1e-9
        # the stored examples are the real ones: within eps of the clean image and classified
        # by the ensemble as recorded
        with np.load(run_dir / r["examples_file"], allow_pickle=False) as a:
            x, x_adv, pred = (torch.from_numpy(a[k]) for k in ("x", "x_adv", "pred_adv"))
        assert x.shape == x_adv.shape and x.shape[0] == 8
        assert float((x_adv - x).abs().max()) <= r["eps"] + 1e-6
        with torch.no_grad():
            assert torch.equal(ens.eval()(x_adv).argmax(-1), pred)
    uap = next(r for r in robust if r["threat_model"] == "universal")
    with np.load(run_dir / uap["delta_file"], allow_pickle=False) as a:
        assert float(np.abs(a["delta"]).max()) <= uap["eps"] + 1e-6


def test_report_tables_carry_n_intervals_settings_and_definitions(run_dir):
    runs = load_runs([run_dir])
    table = summary_table(runs)
    acc_cols = [i for i, h in enumerate(table.headers)
                if h.endswith("%") and h != "disagree %"]
    assert len(acc_cols) == 5  # clean, WB fgsm, WB pgd, transfer fgsm, UAP
    weighted = table.headers.index("weighted")
    for row in table.rows:
        for i in acc_cols:
            assert CELL.match(row[i]), (table.headers[i], row[i])
        assert re.match(r"^\d+\.\d{2} \[\d+\.\d, \d+\.\d\] n=80 clean, 40 UAP$", row[weighted])
    # the clean figure on the most images (records.jsonl, 80) is the one shown
    pgd = next(i for i, h in enumerate(table.headers) if h.startswith("WB pgd"))
    assert "steps 3" in table.subheaders[pgd] and "norm linf" in table.subheaders[pgd]
    assert "weighted = 0.5 * clean" in table.note and "Wilson" in table.note
    page = (run_dir / "report" / "index.html").read_text()
    assert "<h2>Members</h2>" in page and 'id="provenance"' in page
    assert "figures/examples.png" in page and "figures/uap.png" in page
    md = (run_dir / "report" / "summary.md").read_text()
    assert "robens run" in md and "## Provenance" in md


def test_provenance_reads_what_the_run_folder_holds(run_dir):
    (prov,) = provenance(load_runs([run_dir]))
    facts = dict((r[0], r[1]) for r in prov.facts.rows)
    assert facts["command"].startswith("robens run ") and "suite.yaml" in facts["command"]
    assert re.fullmatch(r"[0-9a-f]{16}", facts["config hash"])
    assert facts["training seed"] == "0" and facts["surrogate seed"] == "1"
    assert "torch" in facts["versions (robens, torch, numpy, python)"]
    assert "CPUs" in facts["machine"] and "GPU" in facts["machine"]
    stages = [r[0] for r in prov.times.rows]
    assert stages[0] == "training" and "suite, all units" in stages
    assert "name: tiny-main" in prov.config


def test_provenance_says_what_is_missing(tmp_path):
    write_json_records(tmp_path / "r" / "records.jsonl", [make_record(
        method="m", dataset="mnist", model="1xlenet", metric="clean_accuracy", value=0.9,
        n=100)])
    (prov,) = provenance(load_runs([tmp_path / "r"]))
    facts = dict((r[0], r[1]) for r in prov.facts.rows)
    assert facts["command"].startswith("not recorded") and facts["machine"] == "not recorded"
    assert prov.times is None and prov.config == ""


# ---------------------------------------------------------------------------- figures
def _capture(monkeypatch):
    import robens.report.figures as figures

    got = {}

    def finish(fig, path, title, caption):
        got["fig"] = fig
        return {"file": path.name, "title": title, "caption": caption}

    monkeypatch.setattr(figures, "finish", finish)
    return figures, got


def _acc_records(eps_list):
    base = dict(method="m", dataset="mnist", model="2xlenet", n=100)
    recs = [make_record(**base, metric="clean_accuracy", value=0.9)]
    recs += [make_record(**base, metric="robust_accuracy", value=0.8 - e, attack="pgd", eps=e,
                         threat_model="white_box") for e in eps_list]
    return recs


@pytest.mark.parametrize(("eps_list", "lines"), [([0.1], False), ([0.05, 0.1], False),
                                                 ([0.05, 0.1, 0.2], True)])
def test_accuracy_vs_eps_draws_lines_only_from_three_eps(tmp_path, monkeypatch, eps_list,
                                                         lines):
    figures, got = _capture(monkeypatch)
    write_json_records(tmp_path / "r" / "results.jsonl", _acc_records(eps_list))
    assert figures.fig_accuracy_vs_eps(load_runs([tmp_path / "r"]), tmp_path / "a.png")
    (ax,) = got["fig"].axes
    (series,) = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]  # not the bar caps
    assert len(series.get_xdata()) == len(eps_list) + 1  # eps = 0 is the clean accuracy
    assert (series.get_linestyle() != "None") == lines


def test_accuracy_vs_eps_draws_a_record_at_zero_and_one(tmp_path, monkeypatch):
    # a robust accuracy of 0 on 500 images once made a negative error bar (matplotlib refused
    # the figure and with it the general report)
    figures, _ = _capture(monkeypatch)
    base = dict(method="m", dataset="mnist", model="2xlenet", n=500)
    recs = [make_record(**base, metric="clean_accuracy", value=1.0)]
    recs += [make_record(**base, metric="robust_accuracy", value=v, attack="pgd", eps=e,
                         threat_model="white_box") for e, v in ((0.1, 1.0), (0.3, 0.0))]
    write_json_records(tmp_path / "r" / "results.jsonl", recs)
    assert figures.fig_accuracy_vs_eps(load_runs([tmp_path / "r"]), tmp_path / "a.png")


# ---------------------------------------------------------------------------- published
def test_no_published_table_beside_a_plain_baseline(run_dir):
    assert published_tables(load_runs([run_dir])) == []
    assert "Published numbers" not in (run_dir / "report" / "index.html").read_text()


def test_published_table_shown_for_its_recipe(tmp_path):
    base = dict(dataset="fashion-mnist", model="9xlenet", members=9, strategy="bagging",
                reg_term="jr", reg_lambda=0.05, n=100)
    recs = [make_record(method="je", metric="clean_accuracy", value=0.8, **base)]
    recs += [make_record(method="je", metric="robust_accuracy", value=0.4, attack="uap",
                         eps=0.1, threat_model="universal", **base)]
    write_json_records(tmp_path / "je" / "results.jsonl", recs)
    titles = [t.title for t in published_tables(load_runs([tmp_path / "je"]))]
    assert len(titles) == 1 and titles[0].startswith("Jacobian Ensembles, Table 1")
    index = build_report(tmp_path / "je", tmp_path / "rep")
    assert "Published numbers beside ours" in index.read_text()
