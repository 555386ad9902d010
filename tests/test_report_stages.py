"""The report shows a cascade's per-stage log and the adaptive aggregation counts."""

from __future__ import annotations

from robens.records import make_record, write_json_records


def test_stage_and_aggregation_tables(tmp_path):
    from robens.report import build_report

    base = dict(method="m", dataset="synthetic", model="3xlenet", threat_model="white_box",
                eps=0.1, n=100)
    stages = [{"stage": "clean", "robust_accuracy": 0.9, "n_attacked": 0, "n_broken": 0,
               "seconds": 0.0},
              {"stage": "apgd-ce", "robust_accuracy": 0.2, "n_attacked": 90, "n_broken": 70,
               "seconds": 3.0},
              {"stage": "square", "robust_accuracy": 0.19, "n_attacked": 20, "n_broken": 1,
               "seconds": 9.5}]
    recs = [make_record(**base, metric="clean_accuracy", value=0.9, attack="none"),
            make_record(**base, metric="robust_accuracy", value=0.19, attack="autoattack",
                        stages=stages),
            make_record(**base, metric="robust_accuracy", value=0.25, attack="pgd",
                        broken_by={"logits": 60, "probs": 4, "loss": 1})]
    write_json_records(tmp_path / "run" / "results.jsonl", recs)
    index = build_report(tmp_path / "run", tmp_path / "report")
    md = (index.parent / "summary.md").read_text()
    assert "## Attack stages" in md and "autoattack eps=0.1 stages (n = 100)" in md
    assert "| apgd-ce | 20.00 | 90 | 70 | 3.0 |" in md
    assert "| apgd-ce | 20.00 | 90 | 70 | 3.0 | [13.3, 28.9] |" in md  # Wilson, 20 of 100
    assert "| logits | probs | loss |" in md and "| 60 | 4 | 1 |" in md
    assert "WB autoattack 0.1 %" in md and "WB pgd 0.1 %" in md
    assert "Attack stages" in index.read_text()
