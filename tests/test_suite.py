"""The attack-suite evaluator: schema, records, resumability, per-sample output, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from conftest import small_config

from robens.config import validate_config
from robens.errors import ConfigError
from robens.evaluate import load_suite, run_suite
from robens.evaluate.suite import SuiteRunner, _regularizer
from robens.records import read_json_records
from robens.training import Trainer


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny trained 2-member LeNet ensemble on synthetic data (seconds)."""
    tmp = tmp_path_factory.mktemp("suite")
    cfg = validate_config(small_config(
        tmp, **{"data.train_size": 300, "data.test_size": 100, "name": "tiny"}
    ))
    Trainer(cfg, progress=False, echo=None).fit()
    return tmp / "run"


def quiet(_msg: str) -> None:
    pass


# ---------------------------------------------------------------------------- schema
@pytest.mark.parametrize(
    "suite,message",
    [
        ({"attacks": [{"attack": "fgsm", "eps": 0.1, "bogus": 1}]}, "attacks.0.bogus: unknown key"),
        ({"tests_size": 10}, "tests_size: unknown key"),
        ({"metrics": {"gaas": {"k": [25]}}}, "order 25"),
        ({"metrics": {"coherence": True}}, "metrics.coherence: unknown key"),
        ({"attacks": [{"attack": "nope", "eps": 0.1}]}, "unknown attack"),
        ({"attacks": [{"attack": "fgsm", "eps": 0.1, "threat": "transfer"}]}, "surrogate"),
        ({"attacks": [{"attack": "uap", "eps": 0.1}]}, "threat: universal"),
        ({"attacks": [{"attack": "pgd", "eps": 0.1, "params": {"stepz": 3}}]}, "stepz"),
        ({"attacks": [{"attack": "fgsm", "eps": -1}]}, "eps"),
        ({"attacks": [{"attack": "fgsm", "eps": 0.1, "threat": "transfer",
                       "surrogate": "missing"}]}, "neither a surrogate name"),
        ({"surrogates": {"s": {}}}, "exactly one of"),
    ],
)
def test_suite_schema_errors_name_the_key(suite, message):
    with pytest.raises(ConfigError) as exc:
        load_suite(suite)
    assert message in str(exc.value)


def test_suite_shorthands(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump([{"attack": "FGSM", "eps": 0.1}]))
    s = load_suite(path)
    assert s.attacks[0].attack == "fgsm" and s.attacks[0].eps == [0.1]
    m = load_suite({"metrics": {"disagreement": True, "noise": False}}).metrics
    assert m.disagreement is not None and m.noise is None
    assert _regularizer("ce + 0.5*gal") == ("gal", 0.5)
    assert _regularizer("ce + adp") == ("adp", 1.0)
    assert _regularizer("ce") == ("none", 0.0)


# ---------------------------------------------------------------------------- running
def suite_dict(ckpt) -> dict:
    return {
        "name": "unit",
        "test_size": 40,
        "batch_size": 20,
        "per_sample": True,
        "attacks": [
            {"attack": "fgsm", "eps": [0.05, 0.1], "masking_samples": 8},
            {"attack": "fgsm", "eps": 0.1, "threat": "transfer", "surrogate": str(ckpt)},
            {"attack": "uap", "eps": 0.1, "threat": "universal", "fit_size": 40,
             "params": {"iterations": 2, "batch_size": 20}},
        ],
        "metrics": {"transfer_matrix": {"samples": 20}, "disagreement": True,
                    "noise": {"sigmas": [0.1]}, "rotation": {"degrees": [10]},
                    "gradients": {"samples": 20, "statistics": ["coherence", "cosine"]}},
    }


def test_run_suite_records_resume_and_outputs(ckpt, tmp_path, monkeypatch):
    out = tmp_path / "eval"
    calls: list[float] = []
    original = SuiteRunner.unit_attack

    def flaky(self, entry, eps, uid):
        calls.append(eps)
        if entry.threat == "white_box" and eps == 0.1 and calls.count(0.1) == 1:
            raise KeyboardInterrupt  # the evaluation is killed during the second unit
        return original(self, entry, eps, uid)

    monkeypatch.setattr(SuiteRunner, "unit_attack", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_suite(ckpt, suite_dict(ckpt), out=out, progress=False, echo=quiet)
    done = sorted(p.name for p in (out / "suite" / "units").glob("*.json"))
    assert len(done) == 2 and done[0].startswith("clean-") and "eps0.05" in done[1]
    partial = read_json_records(out / "results.jsonl")
    assert {r["metric"] for r in partial} >= {"clean_accuracy", "robust_accuracy"}

    res = run_suite(ckpt, suite_dict(ckpt), out=out, progress=False, echo=quiet)
    assert len(res["skipped"]) == 2  # the finished units were not recomputed
    assert calls.count(0.05) == 1
    recs = read_json_records(out / "results.jsonl")
    metrics = {r["metric"] for r in recs}
    assert metrics >= {
        "clean_accuracy", "member_clean_accuracy", "robust_accuracy", "attack_success_rate",
        "uap_fooling_rate", "weighted_accuracy", "transfer_matrix_accuracy",
        "disagreement_pairwise", "noise_accuracy", "rotation_accuracy", "coherence",
        "mean_pairwise_cosine",
    }
    for r in recs:
        for key in ("method", "dataset", "model", "attack", "eps", "metric", "value", "seed",
                    "config_hash", "versions"):
            assert key in r
        assert r["method"] == "tiny" and r["reg_term"] == "none" and r["members"] == 2
    wb = [r for r in recs if r["metric"] == "robust_accuracy" and r["threat_model"] == "white_box"]
    assert sorted(r["eps"] for r in wb) == [0.05, 0.1]
    assert all(isinstance(r["warnings"], list) and r["n"] == 40 for r in wb)
    tr = next(r for r in recs if r["threat_model"] == "transfer" and r["metric"] ==
              "robust_accuracy")
    assert tr["surrogate"] == str(ckpt) and tr["combine_attack"] == "loss"
    clean = next(r for r in recs if r["metric"] == "clean_accuracy")["value"]
    uap = next(r for r in recs if r["threat_model"] == "universal" and r["metric"] ==
               "robust_accuracy")["value"]
    weighted = next(r for r in recs if r["metric"] == "weighted_accuracy")["value"]
    assert weighted == pytest.approx(0.5 * (clean + uap))
    mat = [r for r in recs if r["metric"] == "transfer_matrix_accuracy"]
    assert len(mat) == 4 and {(r["source"], r["target"]) for r in mat} == {
        (0, 0), (0, 1), (1, 0), (1, 1)}
    # CSV beside the JSON lines, one row per record
    lines = (out / "results.csv").read_text().strip().splitlines()
    assert len(lines) == len(recs) + 1
    # per-sample arrays of a white-box unit
    npz = sorted((out / "suite" / "samples").glob("white-box-fgsm-eps0.1-*.npz"))
    with np.load(npz[0]) as z:
        assert z["index"].shape == (40,) and set(z) >= {"label", "pred_clean", "pred_adv", "norm"}
        assert float(z["norm"].max()) <= 0.1 + 1e-6
    # a third run does nothing; a changed entry runs anew (only that unit)
    again = run_suite(ckpt, suite_dict(ckpt), out=out, progress=False, echo=quiet)
    assert again["ran"] == []
    changed = suite_dict(ckpt)
    changed["attacks"][0]["eps"] = [0.05, 0.2]
    third = run_suite(ckpt, changed, out=out, progress=False, echo=quiet)
    assert len(third["ran"]) == 1 and "eps0.2" in third["ran"][0]


def test_cli_evaluate_suite(ckpt, tmp_path, capsys):
    from robens.cli import main

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"test_size": 20, "batch_size": 10,
                                    "attacks": [{"attack": "fgsm", "eps": [0.1],
                                                 "masking_checks": False}]}))
    rc = main(["evaluate", str(ckpt), "--suite", str(path), "-o", str(tmp_path / "o"),
               "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "robust_accuracy" in out and "results.jsonl" in out
    recs = read_json_records(tmp_path / "o" / "results.jsonl")
    assert next(r for r in recs if r["metric"] == "robust_accuracy")["n"] == 20
    rc = main(["evaluate", str(ckpt), "--suite", str(tmp_path / "missing.yaml")])
    assert rc == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("attacks: [{attack: fgsm, eps: 0.1, wat: 1}]\n")
    assert main(["evaluate", str(ckpt), "--suite", str(bad)]) == 2
    assert "attacks.0.wat: unknown key" in capsys.readouterr().err
    json.dumps(recs)  # records are JSON-serializable


def test_cross_check_flags_black_box_beating_white_box():
    from robens.evaluate.suite import _cross_check

    def rec(threat, attack, value, unit):
        return {"metric": "robust_accuracy", "threat_model": threat, "attack": attack,
                "eps": 0.1, "value": value, "unit": unit, "warnings": []}

    wb = rec("white_box", "fgsm", 0.5, "u1")
    wb_pgd = rec("white_box", "pgd", 0.1, "u2")
    records = [wb, wb_pgd, rec("transfer", "fgsm", 0.3, "u3"), rec("transfer", "pgd", 0.2, "u4")]
    _cross_check(records)
    assert len(wb["warnings"]) == 1 and "transfer fgsm" in wb["warnings"][0]
    assert wb_pgd["warnings"] == []  # transfer PGD (0.2) is weaker than white-box PGD (0.1)
    _cross_check(records)  # idempotent
    assert len(wb["warnings"]) == 1


def test_default_suite_of_a_config(tmp_path):
    from pathlib import Path

    from robens.pipeline import default_suite

    configs = Path(__file__).resolve().parent.parent / "configs"
    assert default_suite(configs / "main.yaml") == configs / "suites" / "main.yaml"
    assert default_suite(tmp_path / "other.yaml") is None
    load_suite(default_suite(configs / "main.yaml"))  # the main suite validates


def test_autoattack_units_record_their_stages_and_the_report_shows_them(ckpt, tmp_path):
    """A suite's AutoAttack unit keeps the cascade's per-stage log (``stages``; adaptive:
    ``stages_by_aggregation``): the last stage's robust accuracy is the record's, and the
    report prints a stage table."""
    from robens.report import build_report

    aa = {"attack": "autoattack", "eps": [0.1], "masking_checks": False,
          "params": {"steps": 3, "n_target_classes": 2, "n_queries": 10}}
    suite = {"test_size": 40, "batch_size": 20, "seed": 0,
             "attacks": [{**aa, "adaptive": False}, {**aa, "name": "aa-adaptive"}]}
    out = tmp_path / "out"
    recs = run_suite(ckpt, suite, out=out, progress=False, echo=quiet)["records"]
    rob = [r for r in recs if r["metric"] == "robust_accuracy" and r.get("member") is None]
    plain = next(r for r in rob if r["combine_attack"] != "adaptive")
    adaptive = next(r for r in rob if r["combine_attack"] == "adaptive")
    assert [s["stage"] for s in plain["stages"]] == ["clean", "apgd-ce", "apgd-t", "square"]
    assert plain["stages"][0]["robust_accuracy"] == pytest.approx(plain["clean_accuracy"])
    assert plain["stages"][-1]["robust_accuracy"] == pytest.approx(plain["value"])
    logs = adaptive["stages_by_aggregation"]
    assert set(logs) <= {"logits", "probs", "loss"} and "logits" in logs
    assert [s["stage"] for s in logs["logits"]] == ["clean", "apgd-ce", "apgd-t", "square"]
    page = build_report(out, tmp_path / "report").read_text()
    assert "stages (n = 40)" in page and "stages per aggregation" in page
