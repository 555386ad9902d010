"""Reproduction recipes: validation and expansion of every recipe, stage references, the
summaries (weighted accuracy ordering, Spearman correlation, GAL checks) on known records, a
tiny in-process run on synthetic data, the CLI, and (slow) the smallest recipe end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from robens.cli import main
from robens.config import validate_config
from robens.errors import ConfigError
from robens.reproduce import (
    REQUIRED_SCALES,
    TrialView,
    deep_merge,
    format_recipe_plan,
    list_recipes,
    load_recipe,
    objective_weights,
    plan_recipe,
    run_recipe,
    spearman,
    summarize,
    waves,
    write_summary,
)

EXPECTED = {"jacobian-ensembles", "diversity-training", "adp", "gdr", "mmc", "rce-detection"}
FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.fixture
def one_thread():
    """Tiny runs use one torch thread (oversubscribed threads crawl on a shared machine)."""
    before = torch.get_num_threads()
    yield {"training.threads": 1}
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------- validation
def test_every_recipe_is_there():
    assert EXPECTED <= set(list_recipes())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recipe_expands_at_every_scale_and_dataset(name, tmp_path):
    raw, _ = load_recipe(name)
    assert set(REQUIRED_SCALES) <= set(raw["scales"])
    assert "tiny" in raw["scales"]
    for scale in raw["scales"]:
        for dataset in [*raw["datasets"], "synthetic"]:
            plan = plan_recipe(name, scale, dataset, output_dir=tmp_path / f"{scale}-{dataset}")
            assert plan.stages and all(s.trials for s in plan.stages)
            for stage, trial in plan.trials():
                cfg = trial.config
                assert cfg.data.dataset == dataset
                assert trial.run_dir.is_relative_to(tmp_path / f"{scale}-{dataset}" / stage.name)
                for src in cfg.training.adversarial.sources:  # earlier stage's checkpoints
                    assert Path(src).is_relative_to(plan.output_dir)
            notes = " ".join(plan.notes)
            if scale == "quick":
                assert notes, f"{name}: the quick scale must say what it reduces"
    # the quick scale is smaller than the paper scale
    quick, paper = plan_recipe(name, "quick"), plan_recipe(name, "paper")
    q = sum((t.config.data.train_size or 60000) * t.config.training.epochs
            for _, t in quick.trials())
    p = sum((t.config.data.train_size or 60000) * t.config.training.epochs
            for _, t in paper.trials())
    assert q < p


def test_jacobian_recipe_grid():
    plan = plan_recipe("jacobian-ensembles", "paper")
    trials = [t for _, t in plan.trials()]
    assert len(trials) == 8 + 3 * 8 * 3  # singles + (bagging, snapshot, soft voting) x M x lambda
    snaps = [t.config for t in trials if t.config.training.strategy == "snapshot"]
    assert snaps and all(c.schedule.cycles == c.model.members for c in snaps)
    assert {t.config.model.members for t in trials} == {1, 3, 6, 9}
    assert all(t.config.model.combine == "probs" for t in trials)
    uap = plan.stages[0].sweep.suite["attacks"][0]
    assert uap["eps"] == [0.10, 0.15, 0.20, 0.25] and uap["params"]["seeds"] == 50
    quick = plan_recipe("jacobian-ensembles", "quick")
    fams = {(t.config.name, t.config.model.members) for _, t in quick.trials()}
    assert {("single", 1), ("bagging", 3), ("snapshot", 3), ("soft-voting", 3)} <= fams


def test_diversity_recipe_stages_and_references(tmp_path):
    plan = plan_recipe("diversity-training", "quick", output_dir=tmp_path)
    pre, targets = plan.stages
    assert targets.needs == ["pretrained"] and [len(w) for w in waves(plan)] == [1, 1]
    by_name = {t.config.name: t for t in pre.trials}
    assert by_name["surrogate"].config.model.members == 5
    ckpt = {n: str(t.run_dir / "checkpoint.safetensors") for n, t in by_name.items()}
    roles = {t.config.name: t.config for t in targets.trials}
    assert set(roles) == {"base", "div", "ens", "ens-div"}
    assert roles["ens"].training.adversarial.sources == [ckpt["source"]]
    assert roles["ens-div"].training.adversarial.sources == [ckpt["source"]]
    assert roles["div"].training.adversarial.sources == []
    assert "gal" in roles["ens-div"].objective and "gal" not in roles["ens"].objective
    assert all(c.model.members == 5 for c in roles.values())
    suite = targets.sweep.suite
    assert suite["surrogates"]["surrogate"]["checkpoint"] == ckpt["surrogate"]
    assert {a["attack"] for a in suite["attacks"]} == {"fgsm", "rfgsm", "ifgsm", "mifgsm",
                                                       "pgd_cw"}
    assert all(a["threat"] == "transfer" for a in suite["attacks"])
    assert pre.sweep.suite is None
    # per-dataset settings: MNIST uses the paper's eps, CIFAR-10 Conv-4
    mnist = plan_recipe("diversity-training", "paper", "mnist", output_dir=tmp_path / "m")
    assert mnist.stages[1].sweep.suite["attacks"][0]["eps"] == [0.1, 0.3]
    cifar = plan_recipe("diversity-training", "paper", "cifar10", output_dir=tmp_path / "c")
    assert {t.config.model.arch for _, t in cifar.trials()} == {"conv4"}
    assert {t.config.training.epochs for _, t in cifar.trials()} == {20}


def test_independent_stages_form_one_wave():
    plan = plan_recipe("mmc", "quick")
    assert [[s.name for s in w] for w in waves(plan)] == [["sce", "mmc"]]
    mmc = plan.stages[1]
    assert mmc.trials[0].config.model.head == "mmc"
    # the paper's adaptive PGD loss per model, plus the CW margin on both (AutoAttack beside)
    def losses(stage):
        return {a["params"]["loss"] for a in stage.sweep.suite["attacks"] if a["attack"] == "pgd"}

    assert losses(mmc) == {"mmc", "cw"} and losses(plan.stages[0]) == {"ce", "cw"}
    assert mmc.sweep.suite["per_sample"] is True  # per-image outcomes for the paired checks


def test_overrides_and_dry_run_text(tmp_path):
    plan = plan_recipe("gdr", "quick", output_dir=tmp_path, overrides={"training.device": "cpu"})
    assert all(t.config.training.device == "cpu" for _, t in plan.trials())
    text = format_recipe_plan(plan)
    assert "recipe gdr (scale quick, dataset fashion-mnist)" in text
    assert "pending" in text and "note:" in text


# ---------------------------------------------------------------------------- errors
def _mini(**over) -> dict:
    recipe = {
        "name": "mini",
        "summary": "gdr",
        "datasets": {"fashion-mnist": {}},
        "base": {"data": {"train_size": 50, "test_size": 20}, "model": {"members": 2}},
        "stages": {"a": {"grids": {"g": {"axes": {"seed": [0, 1]}}}}},
        "scales": {"quick": {}, "paper": {}},
    }
    return deep_merge(recipe, over)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="unknown recipe 'nope'.*jacobian-ensembles"):
        plan_recipe("nope")
    with pytest.raises(ConfigError, match="scales.*not 'huge'"):
        plan_recipe("gdr", "huge")
    with pytest.raises(ConfigError, match="not 'cifar10'"):
        plan_recipe("jacobian-ensembles", "quick", "cifar10")
    with pytest.raises(ConfigError, match="stages.a.bogus: unknown key"):
        plan_recipe(_mini(stages={"a": {"bogus": 1}}))
    with pytest.raises(ConfigError, match="scales paper are required"):
        plan_recipe({k: v for k, v in _mini().items() if k != "scales"} | {
            "scales": {"quick": {}}})
    with pytest.raises(ConfigError, match="unknown variable '\\$nope'"):
        plan_recipe(_mini(base={"objective": "$nope"}))
    with pytest.raises(ConfigError, match="'@later' names no earlier stage"):
        plan_recipe(_mini(stages={"a": {"base": {"training": {"adversarial": {
            "attack": "fgsm", "sources": ["@later"]}}}}}))
    with pytest.raises(ConfigError, match="names 2 checkpoints; use it in a list"):
        plan_recipe(_mini(stages={"b": {"suite": {"surrogates": {"s": {"checkpoint": "@a"}}}}}),
                    output_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown published table 'nope'"):
        plan_recipe(_mini(published=["nope"]))
    with pytest.raises(ConfigError, match="stages.a.grids.g.*model.bogus"):
        plan_recipe(_mini(stages={"a": {"grids": {"g": {"axes": {"model.bogus": [1]}}}}}))


def test_merge_and_variables(tmp_path):
    assert deep_merge({"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"c": [2]}, "e": None}) == {
        "a": {"b": 1, "c": [2]}, "d": 1, "e": None}
    recipe = _mini(
        vars={"lams": ["ce", "ce + 0.5*gdr"], "outer": "$inner", "inner": 3},
        stages={"a": {"grids": {"g": {"axes": {"objective": "$lams", "seed": [0]}},
                                "h": None}}},
        scales={"quick": {"set": {"vars": {"lams": ["ce"]}, "base": {"training": {
            "epochs": "$outer"}}}}},
    )
    plan = plan_recipe(recipe, "quick", output_dir=tmp_path)
    assert [t.config.objective for _, t in plan.trials()] == ["ce"]
    assert plan.stages[0].trials[0].config.training.epochs == 3
    assert len(plan_recipe(recipe, "paper", output_dir=tmp_path / "p").stages[0].trials) == 2
    assert objective_weights("ce + 0.05*jr + gal") == {"ce": 1.0, "jr": 0.05, "gal": 1.0}


# ---------------------------------------------------------------------------- summaries
def _view(stage: str, cfg: dict, records: list[dict], tid: str, root: Path | None = None
          ) -> TrialView:
    config = validate_config(deep_merge({"output_dir": "x"}, cfg))
    view = TrialView(stage, "g", tid, {}, config, (root or Path("x")) / tid, records)
    if root is not None:
        _attach_samples(view)
    return view


def _attach_samples(view: TrialView, default_n: int = 500) -> None:
    """Per-image outcomes consistent with the view's accuracy records, as a suite stores them:
    images 0..n-1, correct on a prefix (so two models' correct sets are nested and every
    discordant pair favours the more accurate one)."""
    clean = next((r for r in view.records if r["metric"] == "clean_accuracy"), None)
    samples = view.run_dir / "suite" / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(view.records):
        if r["metric"] != "robust_accuracy":
            continue
        n = r.setdefault("n", default_n)
        r["unit"] = f"u{i}"
        k_adv = round(r["value"] * n)
        k_clean = max(k_adv, round((clean["value"] if clean else 1.0) * n))
        idx = np.arange(n)
        np.savez(samples / f"u{i}.npz", index=idx, label=np.zeros(n, np.int64),
                 pred_clean=(idx >= k_clean).astype(np.int64),
                 pred_adv=(idx >= k_adv).astype(np.int64))


def _uap_records(clean: float, uap: list[float]) -> list[dict]:
    recs = [{"metric": "clean_accuracy", "value": clean, "unit": "clean-1", "n": 1000}]
    recs += [{"metric": "robust_accuracy", "threat_model": "universal", "eps": e, "value": v,
              "n": 1000} for e, v in zip([0.1, 0.15, 0.2, 0.25], uap, strict=True)]
    return recs


def test_jacobian_summary_weighted_accuracy_and_ordering(tmp_path):
    plan = plan_recipe("jacobian-ensembles", "quick", output_dir=tmp_path)
    views = [
        _view("models", {"name": "single", "model": {"members": 1}},
              _uap_records(0.90, [0.2, 0.1, 0.1, 0.0]), "std", tmp_path),
        _view("models", {"name": "single", "objective": "ce + 0.1*jr", "model": {"members": 1}},
              _uap_records(0.80, [0.4, 0.3, 0.3, 0.2]), "jr", tmp_path),
        _view("models", {"name": "bagging", "objective": "ce + 0.05*jr",
                         "model": {"members": 6}, "training": {"strategy": "bagging"}},
              _uap_records(0.84, [0.5, 0.45, 0.4, 0.37]), "bag", tmp_path),
    ]
    out = summarize(plan, views)
    rows = {r["trial"]: r for r in out["data"]["rows"]}
    assert rows["std"]["family"] == "standard" and rows["jr"]["family"] == "jr_only"
    assert rows["bag"]["weighted"] == pytest.approx(0.5 * (0.84 + (0.5 + 0.45 + 0.4 + 0.37) / 4))
    assert rows["std"]["weighted"] == pytest.approx(0.5 * (0.9 + 0.1))
    (check,) = out["checks"]
    assert check["verdict"] == "PASS" and "Bagging M=6" in check["detail"]
    assert check["test"] == "paired bootstrap (two-sided)" and check["p"] < 0.05
    # the published F-MNIST rows are shown, with our exact match under Bagging 6 / 0.05
    cmp = out["tables"][1]
    i = next(i for i, r in enumerate(cmp["rows"]) if r[1:4] == ["Bagging", "6", "0.05"])
    assert cmp["rows"][i][0] == "published (fashion-mnist)" and cmp["classes"][i + 1] == "ours"
    # a JR ensemble worse than the JR-only single model fails the check
    views[2].records = _uap_records(0.80, [0.2, 0.2, 0.2, 0.2])
    _attach_samples(views[2])
    assert summarize(plan, views)["checks"][0]["verdict"] == "FAIL"
    views[0].records[0].update(value=0.1, n=10)  # a standard model at chance: no verdict
    assert summarize(plan, views)["checks"][0]["verdict"] == "INCONCLUSIVE"


def test_gal_summary_checks(tmp_path):
    plan = plan_recipe("diversity-training", "quick", output_dir=tmp_path)
    attacks = ["fgsm", "rfgsm", "ifgsm", "mifgsm", "pgd_cw"]

    def recs(level: float, bump: dict | None = None) -> list[dict]:
        out = [{"metric": "clean_accuracy", "value": 0.85, "unit": "clean-1", "n": 500},
               {"metric": "coherence", "value": level - 0.5}]
        for a in attacks:
            for e, drop in ((0.1, 0.0), (0.3, 0.2)):
                v = level - drop + (bump or {}).get(a, 0.0)
                out.append({"metric": "robust_accuracy", "threat_model": "transfer",
                            "attack": a, "eps": e, "value": v})
        return out

    views = [_view("targets", {"name": "base"}, recs(0.3), "b", tmp_path),
             _view("targets", {"name": "div"}, recs(0.5, {"pgd_cw": -0.25}), "d", tmp_path),
             _view("targets", {"name": "ens"}, recs(0.6), "e", tmp_path),
             _view("targets", {"name": "ens-div"}, recs(0.7, {"fgsm": -0.2}), "ed", tmp_path)]
    out = summarize(plan, views)
    div, ensdiv = out["checks"]
    assert div["verdict"] == "FAIL" and "4/5 significant wins" in div["detail"]
    assert "PGD-CW@0.1: 25.0% vs 30.0%" in div["detail"]
    assert ensdiv["verdict"] == "PASS" and "8/10 significant wins, 2 significant losses" in \
        ensdiv["detail"]
    assert out["data"]["cells"]["div"]["fgsm"] == pytest.approx([0.5, 0.3])


def test_mmc_summary_separates_the_cw_attack_and_weighs_its_noise(tmp_path):
    plan = plan_recipe("mmc", "quick", output_dir=tmp_path)

    def recs(un: float, cw: float) -> list[dict]:
        out = [{"metric": "clean_accuracy", "value": 0.9, "unit": "clean-1", "n": 500}]
        for e in (0.1, 0.2):
            for steps in (10, 50):
                out.append({"metric": "robust_accuracy", "threat_model": "white_box",
                            "attack": "pgd", "eps": e, "n": 500, "value": un,
                            "params": {"steps": steps, "loss": "ce"}})
            out.append({"metric": "robust_accuracy", "threat_model": "white_box",
                        "attack": "pgd", "eps": e, "n": 500, "value": cw,
                        "params": {"steps": 50, "loss": "cw"}})
        return out

    views = [_view("sce", {"name": "sce"}, recs(0.08, 0.084), "s", tmp_path),
             _view("mmc", {"name": "mmc"}, recs(0.18, 0.088), "m", tmp_path)]
    out = summarize(plan, views)
    paper, strong = out["checks"]
    assert paper["verdict"] == "PASS" and "4/4" in paper["detail"]  # the CW rows stay out of it
    assert paper["test"] == "McNemar exact (two-sided)" and paper["p"] < 1e-10
    # 0.4 points (2 of 500 images) is no significant difference
    assert strong["verdict"] == "INCONCLUSIVE" and "0/2 significant wins" in strong["detail"]
    assert out["data"]["cw_cells"]["mmc"]["pgd50-cw@0.1"] == pytest.approx(0.088)
    assert out["tables"][1]["headers"] == ["Method", "PGD50-CW eps 0.1", "PGD50-CW eps 0.2"]
    views[1].records = recs(0.18, 0.2)
    _attach_samples(views[1])
    assert summarize(plan, views)["checks"][1]["verdict"] == "PASS"


def test_spearman_and_gdr_summary(tmp_path):
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40])[0] == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1])[0] == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2], [1, 2])[0]) and math.isnan(spearman([1, 1, 1], [1, 2, 3])[0])
    plan = plan_recipe("gdr", "quick", output_dir=tmp_path)
    views = []
    for i, g in enumerate([0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4]):
        recs = [{"metric": "gdr", "value": g},
                {"metric": "clean_accuracy", "value": 0.8, "n": 100}]
        recs += [{"metric": "attack_success_rate", "threat_model": "white_box", "attack": a,
                  "eps": e, "value": g * e * (2 if a == "pgd" else 1)}
                 for a in ("fgsm", "pgd", "mifgsm") for e in (0.03, 0.06, 0.09)]
        views.append(_view("ensembles", {"objective": f"ce + {i}*gdr"}, recs, f"t{i}"))
    out = summarize(plan, views)
    corr = out["data"]["correlation"]
    assert corr["fgsm@0.03"]["n"] == 8 and corr["fgsm@0.03"]["rho"] == pytest.approx(1.0)
    assert corr["fgsm@0.03"]["p"] == pytest.approx(2 / math.factorial(8))  # exact permutation
    check = out["checks"][0]
    assert check["verdict"] == "PASS" and "n = 8" in check["detail"]
    # four ensembles cannot reach p < 0.05 under the permutation test (2/24)
    assert summarize(plan, views[::2])["checks"][0]["verdict"] == "INCONCLUSIVE"


# ---------------------------------------------------------------------------- tiny runs
def test_tiny_diversity_run_in_process(tmp_path, one_thread):
    """Both stages on synthetic data: surrogate + source, then four targets attacked through
    the surrogate; summary, checks and report with the published numbers beside ours."""
    over = {**one_thread, "data.train_size": 120, "data.test_size": 60}
    result = run_recipe("diversity-training", "tiny", "synthetic", output_dir=tmp_path,
                        overrides=over, backend="serial", progress=False, echo=None)
    s = result.summary
    assert s["trials_complete"] == s["trials_total"] == 6
    assert s["wall_seconds"] > 0 and s["scale"] == "tiny" and s["dataset"] == "synthetic"
    assert {c["name"] for c in s["checks"]} >= {
        "Div beats Base under every transfer attack at eps 0.1",
        "Ens+Div beats Ens on most (attack, eps) cells (significant wins only)"}
    for c in s["checks"]:  # a smoke-test scale decides nothing
        assert c["verdict"] == "INCONCLUSIVE" and c["passed"] is None, (c["name"], c["detail"])
    assert set(s["data"]["cells"]) == {"base", "div", "ens", "ens-div"}
    assert all(v is not None for v in s["data"]["cells"]["div"]["fgsm"])
    # Ens trained on FGSM examples of the source trained by the first stage
    src = result.plan.stages[0].trials[1].run_dir / "checkpoint.safetensors"
    ens = next(t for t in result.plan.stages[1].trials if t.config.name == "ens")
    assert ens.config.training.adversarial.sources == [str(src)] and src.exists()
    md = (tmp_path / "report" / "summary.md").read_text()
    assert "published Conv-3 (fashion-mnist)" not in md and "published Conv-3 (mnist)" in md
    assert "91.4/9.7" in md and "**ours (synthetic)**" in md
    assert (tmp_path / "report" / "index.html").exists()
    assert (tmp_path / "report" / "full" / "index.html").exists()
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["checks"] == s["checks"]
    # a second run skips every trial and appends its wall time
    again = run_recipe(result.plan, backend="serial", progress=False, echo=None, report=False)
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert len(timing["invocations"]) == 2 and again.summary["trials_complete"] == 6


def test_tiny_mmc_run_and_cli(tmp_path, one_thread, capsys):
    out = tmp_path / "mmc"
    args = ["reproduce", "mmc", "--scale", "tiny", "--dataset", "synthetic", "--out", str(out),
            "--backend", "serial", "--set", "training.threads=1", "--set",
            "data.train_size=100"]
    assert main([*args, "--dry-run"]) == 0
    assert "stage 2/2 mmc" in capsys.readouterr().out
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "summary:" in text and "MMC beats SCE" in text
    assert "[INCONCLUSIVE] MMC beats SCE" in text and "[PASS]" not in text
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["data"]["cells"]) == {"sce", "mmc"}
    assert summary["checks"] and all(c["verdict"] == "INCONCLUSIVE" for c in summary["checks"])
    assert all(c["test"] == "McNemar exact (two-sided)" and c["p"] is not None
               for c in summary["checks"])
    # one source for each clean accuracy: the progress line prints the table's figure and n
    for role, (k, n) in summary["data"]["clean_n"].items():
        assert f"clean accuracy {100 * k / n:.2f}% on {n} images" in text, role
        assert summary["data"]["clean"][role] == pytest.approx(k / n)
    assert summary["command"].startswith("robens reproduce mmc --scale tiny --dataset synthetic")
    assert "--set data.train_size=100" in summary["command"]
    (out / "report" / "index.html").unlink()
    assert main([*args, "--report-only"]) == 0
    assert (out / "report" / "index.html").exists()
    plan = plan_recipe("mmc", "tiny", "synthetic", out, {"training.threads": 1,
                                                         "data.train_size": 100})
    assert write_summary(plan)[0]["trials_complete"] == 2


def test_cli_list_and_errors(capsys):
    assert main(["reproduce", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in EXPECTED)
    assert main(["reproduce", "nope"]) == 2
    assert "unknown recipe" in capsys.readouterr().err
    assert main(["reproduce", "jacobian-ensembles", "--dataset", "cifar10", "--dry-run"]) == 2


def test_recipe_files_are_plain_yaml():
    for name in EXPECTED:
        path = Path(__file__).resolve().parents[1] / "configs" / "reproduce" / f"{name}.yaml"
        data = yaml.safe_load(path.read_text())
        assert data["name"] == name


# ---------------------------------------------------------------------------- slow
@pytest.mark.slow
@pytest.mark.skipif(not FMNIST.exists(), reason="Fashion-MNIST Debian package not installed")
def test_smallest_recipe_end_to_end_quick(tmp_path):
    """``robens reproduce mmc --scale quick`` (the smallest recipe) from a clean folder, on the
    Ray backend when Ray is installed: both stages, summary and report."""
    try:
        import ray  # noqa: F401

        backend = "ray"
    except ImportError:  # pragma: no cover
        backend = "serial"
    out = tmp_path / "mmc-quick"
    assert main(["reproduce", "mmc", "--scale", "quick", "--out", str(out),
                 "--backend", backend]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials_complete"] == summary["trials_total"] == 2
    cells = summary["data"]["cells"]
    assert all(v is not None for c in cells.values() for v in c.values())
    assert 0.6 < summary["data"]["clean"]["sce"] <= 1.0
    assert summary["checks"] and (out / "report" / "index.html").exists()
