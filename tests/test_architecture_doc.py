"""docs/architecture.md's worked examples run as written: a suite unit and a recipe."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def example(name: str) -> str:
    m = re.search(rf"<!-- example: {name} -->\n```\w+\n(.*?)```", DOC.read_text(), re.S)
    assert m, f"example {name!r} not found in {DOC}"
    return m.group(1)


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    yield {"training.threads": 1}
    torch.set_num_threads(before)


def test_the_suite_unit_example_adds_a_metric(tmp_path):
    from conftest import small_config

    from robens.config import validate_config
    from robens.evaluate.suite import run_suite
    from robens.evaluate.units import UNITS
    from robens.training import Trainer

    if "confidence" not in UNITS:
        exec(compile(example("suite-unit"), "architecture.md:suite-unit", "exec"), {})
    cfg = validate_config(small_config(tmp_path, **{"training.threads": 1}))
    Trainer(cfg, progress=False, echo=None).fit()
    suite = {"name": "doc", "test_size": 30, "metrics": {"confidence": {"samples": 20}}}
    out = run_suite(tmp_path / "run", suite, progress=False, echo=None)
    (rec,) = [r for r in out["records"] if r["metric"] == "mean_confidence"]
    assert rec["n"] == 20 and 0.0 < rec["value"] <= 1.0 and rec["threat_model"] == "none"
    again = run_suite(tmp_path / "run", suite, progress=False, echo=None)
    assert any(u.startswith("metric-confidence-") for u in again["skipped"])


def test_the_recipe_example_runs(tmp_path, one_thread):
    from robens.recipes.summaries import SUMMARIES
    from robens.reproduce import run_recipe

    if "clean-gap" not in SUMMARIES:
        exec(compile(example("recipe-summary"), "architecture.md:recipe-summary", "exec"), {})
    recipe = tmp_path / "clean-gap.yaml"
    recipe.write_text(example("recipe-yaml"))
    assert yaml.safe_load(recipe.read_text())["summary"] == "clean-gap"
    result = run_recipe(str(recipe), "tiny", "synthetic", output_dir=tmp_path / "out",
                        overrides=dict(one_thread), backend="serial", progress=False, echo=None)
    s = result.summary
    assert s["trials_complete"] == s["trials_total"] == 2
    assert set(s["data"]["clean"]) == {"ce", "ce + 0.5*gal"}
    assert s["checks"][0]["name"] == "GAL costs under 5 points of clean accuracy"
    assert (tmp_path / "out" / "report" / "index.html").exists()
