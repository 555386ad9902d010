"""The report: figures (valid PNGs, only when their records exist), tables with published
numbers, Markdown summary and the ``robens report`` command; built from records files only."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from robens.records import make_record, write_json_records
from robens.report import FIGURES, build_report, load_runs, published_tables
from robens.report.published import GAL_TABLE2, JE_TABLE1, PUBLISHED_TABLES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run_records(name: str, members: int, lam: float, term: str, coh: float,
                 acc_scale: float, seed: int = 0) -> list[dict]:
    base = dict(method=name, dataset="fashion-mnist", model=f"{members}xlenet", seed=seed,
                config_hash=f"h{name}", members=members, arch="lenet",
                objective=f"ce + {lam}*{term}" if term != "none" else "ce", reg_term=term,
                reg_lambda=lam, strategy="bagging" if members > 1 else "joint",
                adversarial_training=False)
    clean = 0.9 - 0.05 * lam
    recs = [make_record(**base, metric="clean_accuracy", value=clean, n=300,
                        threat_model="none")]
    for threat in ("white_box", "transfer"):
        for attack in ("fgsm", "pgd"):
            for eps in (0.05, 0.1):
                v = clean * acc_scale * (1 - 4 * eps) * (1.3 if threat == "transfer" else 1)
                common = dict(attack=attack, eps=eps, threat_model=threat, n=300,
                              warnings=["masked?"] if (attack, eps) == ("pgd", 0.1) else [])
                recs.append(make_record(**base, metric="robust_accuracy", value=v, **common))
                recs.append(make_record(**base, metric="attack_success_rate", value=1 - v / clean,
                                        **common))
    for eps in (0.1, 0.15, 0.2, 0.25):
        recs.append(make_record(**base, metric="robust_accuracy", value=clean * (1 - 2 * eps),
                                attack="uap", eps=eps, threat_model="universal", n=300))
    rng = np.random.default_rng(seed)
    for metric, centre, lim in (("coherence", coh, (-1, 1)),
                                ("mean_pairwise_cosine", coh - 0.1, (-1, 1)),
                                ("gdr", coh / 4 + 0.1, (0, 0.5))):
        vals = np.clip(rng.normal(centre, 0.1, 200), *lim)
        counts, edges = np.histogram(vals, bins=20, range=lim)
        recs.append(make_record(**base, metric=metric, value=float(vals.mean()), n=200,
                                hist_edges=edges.tolist(), hist_counts=counts.tolist()))
    if members > 1:
        for i in range(members):
            for j in range(members):
                recs.append(make_record(**base, metric="transfer_matrix_accuracy",
                                        value=0.2 if i == j else 0.6 - 0.2 * coh, attack="fgsm",
                                        eps=0.1, source=i, target=j, n=100))
    for det, auc in (("confidence", 0.8), ("non_me", 0.6), ("kernel_density", 0.9)):
        fpr = np.linspace(0, 1, 11)
        recs.append(make_record(**base, metric="detection_auc", value=auc, detector=det,
                                attack="fgsm", eps=0.1, fpr=fpr.tolist(),
                                tpr=(fpr ** (1 - auc)).tolist(), n=300, n_pairs=100))
    for s, a in ((0.1, 0.85), (0.2, 0.7)):
        recs.append(make_record(**base, metric="noise_accuracy", value=a, attack="gaussian_noise",
                                sigma=s, n=300))
    recs.append(make_record(**base, metric="rotation_accuracy", value=0.8, attack="rotation",
                            degrees=10.0, n=300))
    for i in range(members):
        recs.append(make_record(**base, metric="member_jacobian_frob_sq", value=10.0 + i,
                                member=i, n=50))
    for metric, v in (("ensemble_jacobian_frob_sq", 6.0), ("jacobian_theorem31_expected", 4.0),
                      ("jacobian_theorem31_lower", 4.0), ("jacobian_theorem31_upper", 11.0)):
        recs.append(make_record(**base, metric=metric, value=v, n=50))
    for k, v in ((4, 0.5), (16, 0.4), (36, 0.3), (64, 0.2)):
        recs.append(make_record(**base, metric="gaas_success", value=v, attack="gaas", eps=0.1,
                                k=k, n=100))
    return recs


def _add_images(d: Path, recs: list[dict]) -> None:
    """Example images (white-box FGSM eps 0.1) and a UAP (eps 0.1) as the suite stores them."""
    rng = np.random.default_rng(0)
    samples = d / "suite" / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    x = rng.random((8, 1, 28, 28)).astype(np.float32)
    x_adv = np.clip(x + rng.choice([-0.1, 0.1], x.shape), 0, 1).astype(np.float32)
    y = np.arange(8) % 10
    np.savez(samples / "wb-fgsm-examples.npz", x=x, x_adv=x_adv, label=y, pred_clean=y,
             pred_adv=(y + 1) % 10)
    np.savez(samples / "uap-delta.npz", delta=rng.uniform(-0.1, 0.1, (1, 28, 28)))
    for r in recs:
        if r["metric"] != "robust_accuracy" or abs(r["eps"] - 0.1) > 1e-9:
            continue
        if r["threat_model"] == "white_box" and r["attack"] == "fgsm":
            r["examples_file"] = "suite/samples/wb-fgsm-examples.npz"
        elif r["threat_model"] == "universal":
            r["delta_file"] = "suite/samples/uap-delta.npz"


def write_fake_runs(root: Path) -> list[Path]:
    """Seven runs: M in {1, 3, 9}, several lambdas, a GAL run; records as the suite writes."""
    specs = [("standard", 1, 0.0, "none", 0.95, 0.3), ("jr-0.1", 1, 0.1, "jr", 0.9, 0.5),
             ("bagging9", 9, 0.0, "none", 0.9, 0.35), ("bagging9-jr0.05", 9, 0.05, "jr", 0.7, 0.6),
             ("bagging9-jr0.5", 9, 0.5, "jr", 0.5, 0.7), ("base3", 3, 0.0, "none", 0.95, 0.3),
             ("gal3", 3, 0.5, "gal", 0.1, 0.6)]
    dirs = []
    for name, m, lam, term, coh, scale in specs:
        d = root / name
        recs = _run_records(name, m, lam, term, coh, scale)
        if name in ("base3", "gal3"):
            _add_images(d, recs)
        write_json_records(d / "results.jsonl", recs)
        dirs.append(d)
    # the clean evaluation's own file, as evaluate_clean_checkpoint writes it (more images)
    write_json_records(root / "base3" / "records.jsonl", [make_record(
        method="base3", dataset="fashion-mnist", model="3xlenet", metric="clean_accuracy",
        value=0.91, n=10000, seed=0, config_hash="hbase3")])
    return dirs


def check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    dirs = write_fake_runs(root)
    out = root / "report"
    return build_report(dirs, out), dirs


def test_every_figure_drawn_and_valid_png(report):
    index, _ = report
    figs = index.parent / "figures"
    names = sorted(p.name for p in figs.glob("*.png"))
    assert names == sorted(name for name, _ in FIGURES)
    for name in names:
        check_png(figs / name)
    page = index.read_text()
    for name in names:
        assert f'src="figures/{name}"' in page
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_tables_and_markdown(report):
    index, _ = report
    page = index.read_text()
    assert "Summary of our runs" in page and page.count("<table>") >= 2
    assert "Jacobian Ensembles, Table 1" in page
    md = (index.parent / "summary.md").read_text()
    assert md.startswith("# robens report") and "| method |" in md
    assert "figures/accuracy_vs_eps.png" in md and "masked?" in md
    # the clean accuracy on the most images wins (records.jsonl, 10k images)
    runs = {r.method: r for r in load_runs([index.parent.parent])}
    assert runs["base3"].clean() == pytest.approx(0.91)


def test_published_rows_matched_to_recipes(report):
    index, dirs = report
    runs = load_runs(dirs)
    tables = {t.title: t for t in published_tables(runs)}
    je = tables[JE_TABLE1["title"]]
    # bagging M=9 lambda=0.05 and the 'standard' run match F-MNIST rows of Table 1
    ours = [row for row, cls in zip(je.rows, je.classes, strict=True) if cls == "ours"]
    labels = {row[0] for row in ours}
    assert {"ours: bagging9-jr0.05", "ours: bagging9", "ours: standard"} <= labels
    row = next(r for r in ours if r[0] == "ours: bagging9-jr0.05")
    clean = 0.9 - 0.05 * 0.05
    avg = np.mean([clean * (1 - 2 * e) for e in (0.1, 0.15, 0.2, 0.25)])
    expected = [f"{100 * clean:.1f}", f"{100 * avg:.1f}", f"{100 * (clean + avg) / 2:.1f}"]
    assert [c.split(" [")[0] for c in row[-3:]] == expected
    assert all(" n=300" in c for c in row[-3:])  # beside each accuracy: its interval and n
    # published tables only for the recipes that reproduce them: the GAL run (3 members on
    # F-MNIST) is not Table 2's recipe (5 members, MNIST/CIFAR-10), so GAL's table is absent
    assert GAL_TABLE2["title"] not in tables


def test_published_data_is_consistent():
    for table in PUBLISHED_TABLES:
        keys = [k for k, _ in table["columns"]] + [k for k, _ in table["label_columns"]]
        for row in table["rows"]:
            assert all(k in row for k in keys), (table["key"], row)
    gal_rows = GAL_TABLE2["rows"]
    assert len(gal_rows) == 16 and gal_rows[0]["fgsm"] == (91.4, 9.7)
    assert JE_TABLE1["rows"][0]["weighted"] == 90.3


def test_figures_only_when_records_exist(tmp_path):
    write_json_records(tmp_path / "run" / "records.jsonl", [make_record(
        method="m", dataset="mnist", model="1xlenet", metric="clean_accuracy", value=0.99,
        n=100)])
    (tmp_path / "out" / "figures").mkdir(parents=True)
    (tmp_path / "out" / "figures" / "tradeoff.png").write_bytes(b"stale")
    index = build_report(tmp_path / "run", tmp_path / "out")
    assert list((tmp_path / "out" / "figures").glob("*.png")) == []  # stale figure removed
    page = index.read_text()
    assert "<img" not in page and "Summary of our runs" in page


def test_cli_report_command(report, tmp_path, capsys):
    from robens.cli import main

    _, dirs = report
    rc = main(["report", str(dirs[0]), str(dirs[-1]), "-o", str(tmp_path / "rep")])
    assert rc == 0
    assert (tmp_path / "rep" / "index.html").is_file()
    assert "report:" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nothing-here"), "-o", str(tmp_path / "x")]) == 2
