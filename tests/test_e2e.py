"""End to end on real Fashion-MNIST (Debian's dataset-fashion-mnist; skipped without it):
``robens run CONFIG --suite SUITE`` trains, evaluates (white-box, transfer from a surrogate the
suite trains itself, UAP, metrics) and builds the report; every figure is a valid PNG."""

from __future__ import annotations

import re

import matplotlib.image as mpimg
import yaml

from robens.records import read_json_records
from robens.report import FIGURES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_train_evaluate_report_on_fashion_mnist(has_fmnist, tmp_path, capsys):
    from robens.cli import main

    run_dir = tmp_path / "run"
    config = {
        "name": "e2e-fmnist",
        "seed": 0,
        "data": {"dataset": "fashion-mnist", "train_size": 1000, "test_size": 300,
                 "batch_size": 100},
        "model": {"arch": "lenet", "members": 2, "activation": "leaky_relu"},
        "training": {"epochs": 1, "threads": 2},
        "output_dir": str(run_dir),
    }
    suite = {
        "name": "e2e",
        "test_size": 100,
        "batch_size": 50,
        "surrogates": {"sur": {"train": {"seed": 1, "data": {"train_size": 300}}}},
        "attacks": [
            {"attack": "fgsm", "eps": [0.05, 0.1], "masking_samples": 20},
            {"attack": "pgd", "eps": 0.1, "params": {"steps": 3}, "test_size": 50,
             "masking_checks": False},
            {"attack": "fgsm", "eps": 0.1, "threat": "transfer", "surrogate": "sur"},
            {"attack": "uap", "eps": 0.15, "threat": "universal", "fit_size": 100,
             "params": {"iterations": 3, "seeds": 2, "batch_size": 50}},
        ],
        "metrics": {
            "transfer_matrix": {"samples": 50},
            "gradients": {"samples": 50},
            "gaas": {"samples": 30, "k": [4, 16]},
            "jacobian": {"samples": 10},
            "disagreement": True,
            "noise": {"sigmas": [0.1]},
            "rotation": {"degrees": [15]},
            "detection": {"samples": 60, "reference_per_class": 10},
        },
    }
    cfg_path = tmp_path / "e2e.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    suite_path = tmp_path / "suite.yaml"
    suite_path.write_text(yaml.safe_dump(suite))

    assert main(["run", str(cfg_path), "--suite", str(suite_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    m = re.search(r"report: (\S+index\.html)", out)
    assert m, out
    index = run_dir / "report" / "index.html"
    assert m.group(1) == str(index) and index.is_file()

    # records: clean evaluation on the 300 test images, suite on 100
    clean = read_json_records(run_dir / "records.jsonl")
    assert next(r for r in clean if r["metric"] == "clean_accuracy")["n"] == 300
    recs = read_json_records(run_dir / "results.jsonl")
    by_metric = {r["metric"] for r in recs}
    assert by_metric >= {"clean_accuracy", "robust_accuracy", "attack_success_rate",
                         "weighted_accuracy", "transfer_matrix_accuracy", "coherence", "gdr",
                         "gaas_success", "ensemble_jacobian_frob_sq", "disagreement_pairwise",
                         "noise_accuracy", "rotation_accuracy", "detection_auc"}
    acc = next(r for r in recs if r["metric"] == "clean_accuracy")["value"]
    assert acc > 0.5  # one epoch on 1000 images learns something
    for r in recs:
        assert r["dataset"] == "fashion-mnist" and r["method"] == "e2e-fmnist"
        if r["metric"] == "robust_accuracy":
            assert 0.0 <= r["value"] <= acc + 1e-9
    tr = [r for r in recs if r.get("threat_model") == "transfer"]
    assert tr and tr[0]["surrogate_seed"] == 1
    assert (run_dir / "surrogates" / "sur" / "checkpoint.safetensors").is_file()
    assert (run_dir / "results.csv").is_file()

    # every figure the page shows exists and is a valid PNG; all but the lambda sweep are drawn
    page = index.read_text()
    srcs = re.findall(r'<img src="([^"]+)"', page)
    expected = {name for name, _ in FIGURES} - {"reg_strength.png"}
    assert {s.split("/")[-1] for s in srcs} == expected
    for src in srcs:
        path = index.parent / src
        assert path.read_bytes()[:8] == PNG_SIGNATURE, src
        img = mpimg.imread(path)
        assert img.ndim == 3 and min(img.shape[:2]) > 100
    assert (index.parent / "summary.md").is_file()

    # a second run resumes: nothing is trained or attacked again
    assert main(["run", str(cfg_path), "--suite", str(suite_path), "--no-progress"]) == 0
    again = capsys.readouterr().out
    assert "training already complete" in again and "robust" not in again
