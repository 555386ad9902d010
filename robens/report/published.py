"""Published numbers (docs/methods.md Sec. 7, copied from the papers' tables), as data.

Each table is a dict: ``key``, ``title``, ``source``, ``kind`` (how our records are matched
and read, see :mod:`robens.report.tables`), ``columns`` (``(key, header)`` pairs) and ``rows``.
A row's ``match`` dict names the recipe (dataset, members, strategy, regularizer and its
strength) that our runs must have for their numbers to be shown beside it; a table whose rows
name no recipe has a table-level ``recipe`` instead. The report shows a table only when one of
our runs has its recipe. Values are percentages; ``(a, b)`` pairs are results at the table's
two budgets ``eps``.
"""

from __future__ import annotations

from typing import Any

# ---------------------------------------------------------------------------- Co et al.
_JE_ROWS = [
    # dataset, ensemble, M, lambda_JR, clean, avg UAP, weighted
    ("mnist", "snapshot", 3, 0.50, 97.8, 82.8, 90.3),
    ("mnist", "snapshot", 9, 0.50, 97.7, 82.3, 90.0),
    ("mnist", "snapshot", 3, 0.20, 98.3, 81.5, 89.9),
    ("mnist", "jr_only", 1, 0.05, 98.4, 74.2, 86.3),
    ("mnist", "bagging", 6, 0.0, 98.1, 42.8, 70.4),
    ("mnist", "standard", 1, 0.0, 99.1, 31.9, 65.5),
    ("fashion-mnist", "bagging", 9, 0.05, 83.9, 43.2, 63.5),
    ("fashion-mnist", "bagging", 6, 0.05, 83.4, 43.0, 63.2),
    ("fashion-mnist", "snapshot", 9, 0.10, 83.2, 42.4, 62.8),
    ("fashion-mnist", "jr_only", 1, 0.10, 79.0, 31.2, 55.1),
    ("fashion-mnist", "bagging", 9, 0.0, 91.2, 12.7, 51.2),
    ("fashion-mnist", "standard", 1, 0.0, 90.8, 12.1, 50.9),
]


def _je_match(dataset: str, ensemble: str, m: int, lam: float) -> dict[str, Any]:
    strategy = {"snapshot": "snapshot", "bagging": "bagging"}.get(ensemble, "joint")
    return {
        "dataset": dataset,
        "members": m,
        "strategy": strategy,
        "reg_term": "jr" if lam > 0 else "none",
        "reg_lambda": lam,
    }


JE_TABLE1: dict[str, Any] = {
    "key": "je_table1",
    "title": "Jacobian Ensembles, Table 1: clean, average worst-case UAP accuracy over"
    " eps in {0.10, 0.15, 0.20, 0.25}, weighted accuracy (LeNet)",
    "source": "Co et al., Jacobian Ensembles Improve Robustness Trade-offs to Adversarial"
    " Attacks (ICANN 2022), Table 1",
    "kind": "uap",
    "label_columns": [("dataset", "Data"), ("ensemble", "Ensemble"), ("members", "M"),
                      ("lambda", "λ_JR")],
    "columns": [("clean", "Clean"), ("avg_uap", "Avg UAP"), ("weighted", "Weighted")],
    "rows": [
        {
            "dataset": d, "ensemble": e, "members": m, "lambda": lam,
            "clean": c, "avg_uap": u, "weighted": w, "match": _je_match(d, e, m, lam),
        }
        for d, e, m, lam, c, u, w in _JE_ROWS
    ],
}

# ---------------------------------------------------------------------------- GAL
_GAL_ATTACKS = [("fgsm", "FGSM"), ("rfgsm", "R-FGSM"), ("ifgsm", "I-FGSM"),
                ("mifgsm", "MI-FGSM"), ("pgd_cw", "PGD-CW")]
_GAL_ROWS = [
    # model, dataset, training, clean, FGSM, R-FGSM, I-FGSM, MI-FGSM, PGD-CW
    ("Conv-3", "mnist", "Base", 99.4, (91.4, 9.7), (92.0, 9.7), (86.1, 0.7), (85.7, 2.6),
     (92.3, 9.7)),
    ("Conv-3", "mnist", "Div", 99.2, (97.1, 34.3), (97.8, 30.6), (97.6, 20.4), (96.9, 16.9),
     (97.1, 35.9)),
    ("Conv-3", "mnist", "Ens", 99.4, (98.9, 61.3), (99.0, 42.5), (99.0, 56.3), (98.8, 45.9),
     (98.8, 44.8)),
    ("Conv-3", "mnist", "Ens+Div", 99.3, (98.9, 73.7), (99.0, 79.3), (99.0, 87.0),
     (98.8, 61.4), (98.2, 71.3)),
    ("Conv-4", "cifar10", "Base", 85.1, (14.1, 7.8), (16.8, 3.2), (9.5, 2.8), (9.0, 7.4),
     (8.8, 5.9)),
    ("Conv-4", "cifar10", "Div", 82.4, (45.3, 14.7), (56.0, 15.1), (51.4, 5.6), (35.0, 7.5),
     (43.9, 11.6)),
    ("Conv-4", "cifar10", "Ens", 82.9, (64.6, 43.2), (70.5, 54.9), (69.4, 54.3), (59.9, 38.6),
     (62.1, 42.8)),
    ("Conv-4", "cifar10", "Ens+Div", 80.5, (68.5, 54.2), (72.0, 66.7), (72.4, 66.3),
     (66.9, 55.4), (66.9, 54.3)),
    ("ResNet-20", "cifar10", "Base", 88.9, (28.8, 13.1), (25.7, 7.1), (8.6, 3.2), (10.2, 6.3),
     (18.7, 10.2)),
    ("ResNet-20", "cifar10", "Div", 84.0, (58.4, 32.4), (64.3, 23.9), (67.7, 44.2),
     (50.0, 11.7), (53.2, 25.4)),
    ("ResNet-20", "cifar10", "Ens", 87.9, (70.9, 44.3), (77.2, 50.9), (79.6, 65.5),
     (66.5, 30.5), (65.9, 37.8)),
    ("ResNet-20", "cifar10", "Ens+Div", 84.7, (74.9, 50.7), (78.1, 57.6), (79.7, 71.5),
     (74.1, 47.4), (71.3, 46.3)),
    ("MIX", "cifar10", "Base", 89.7, (27.9, 9.6), (30.9, 6.1), (13.9, 3.1), (10.6, 5.9),
     (26.0, 7.6)),
    ("MIX", "cifar10", "Div", 88.2, (55.8, 23.2), (65.1, 25.0), (61.8, 19.7), (42.4, 7.1),
     (55.9, 22.2)),
    ("MIX", "cifar10", "Ens", 87.4, (72.6, 49.6), (76.9, 58.4), (77.1, 61.4), (66.9, 27.9),
     (70.0, 47.1)),
    ("MIX", "cifar10", "Ens+Div", 86.4, (73.4, 52.2), (77.9, 64.1), (77.2, 67.5),
     (69.2, 39.7), (71.8, 50.4)),
]
GAL_EPS = {"mnist": (0.1, 0.3), "cifar10": (0.03, 0.09)}
_GAL_ARCH = {"Conv-3": "conv3", "Conv-4": "conv4", "ResNet-20": "resnet20", "MIX": None}


def _gal_match(model: str, dataset: str, training: str) -> dict[str, Any]:
    match: dict[str, Any] = {
        "dataset": dataset,
        "members": 5,
        "reg_term": "gal" if "Div" in training else "none",
        "adversarial": training.startswith("Ens"),
    }
    if _GAL_ARCH[model]:
        match["arch"] = _GAL_ARCH[model]
    return match


GAL_TABLE2: dict[str, Any] = {
    "key": "gal_table2",
    "title": "GAL (Diversity Training), Table 2: black-box accuracy from a separately trained"
    " 5-model surrogate, eps1/eps2 (MNIST 0.1/0.3, CIFAR-10 0.03/0.09)",
    "source": "Kariyappa & Qureshi, Improving Adversarial Robustness of Ensembles with"
    " Diversity Training (arXiv:1901.09981), Table 2",
    "kind": "transfer",
    "eps": GAL_EPS,
    "label_columns": [("model", "Model"), ("dataset", "Data"), ("training", "T")],
    "columns": [("clean", "Clean")] + _GAL_ATTACKS,
    "rows": [
        {
            "model": mo, "dataset": d, "training": t, "clean": c,
            **{a: v for (a, _), v in zip(_GAL_ATTACKS, vals, strict=True)},
            "match": _gal_match(mo, d, t),
        }
        for mo, d, t, c, *vals in _GAL_ROWS
    ],
}

# ---------------------------------------------------------------------------- ADP
_ADP_ROWS = [
    # attack, mnist param, (base, adp20, adp205), cifar param, (base, adp20, adp205)
    ("fgsm", 0.1, (78.3, 95.5, 96.3), 0.02, (36.5, 57.4, 61.7)),
    ("fgsm", 0.2, (21.5, 50.6, 52.8), 0.04, (19.4, 41.9, 46.2)),
    ("bim", 0.1, (52.3, 86.4, 88.5), 0.01, (18.5, 44.0, 46.6)),
    ("bim", 0.15, (12.2, 69.5, 73.6), 0.02, (6.1, 28.2, 31.0)),
    ("pgd", 0.1, (50.7, 73.4, 82.8), 0.01, (23.4, 43.2, 48.4)),
    ("pgd", 0.15, (6.3, 36.2, 41.0), 0.02, (6.6, 26.8, 30.4)),
    ("mifgsm", 0.1, (58.3, 89.7, 92.0), 0.01, (23.8, 49.6, 52.1)),
    ("mifgsm", 0.15, (16.1, 73.3, 77.5), 0.02, (7.4, 32.3, 35.9)),
    ("jsma", 0.3, (84.0, 88.0, 95.0), 0.05, (29.5, 33.0, 43.5)),
    ("jsma", 0.6, (74.0, 85.0, 91.0), 0.1, (27.5, 32.0, 37.0)),
    ("cw", 0.1, (91.6, 95.9, 97.3), 0.001, (71.3, 76.3, 80.6)),
    ("cw", 1.0, (30.6, 75.0, 78.1), 0.01, (45.2, 50.3, 54.9)),
    ("cw", 10.0, (5.9, 20.2, 23.8), 0.1, (18.8, 19.2, 25.6)),
    ("ead", 5.0, (29.8, 91.3, 93.4), 1.0, (17.5, 64.5, 67.3)),
    ("ead", 10.0, (7.3, 87.4, 89.5), 5.0, (2.4, 23.4, 29.6)),
]
ADP_TABLE2: dict[str, Any] = {
    "key": "adp_table2",
    "title": "ADP, Table 2: white-box accuracy of 3 x ResNet-20 (Baseline / ADP_2,0 /"
    " ADP_2,0.5); the parameter is eps (FGSM/BIM/PGD/MIM), gamma (JSMA) or c (C&W, EAD)",
    "source": "Pang et al., Improving Adversarial Robustness via Promoting Ensemble Diversity"
    " (ICML 2019), Table 2",
    "kind": "white_box",
    "recipe": {"reg_term": "adp"},
    "label_columns": [("dataset", "Data"), ("attack", "Attack"), ("param", "Param")],
    "columns": [("baseline", "Baseline"), ("adp_2_0", "ADP 2,0"), ("adp_2_05", "ADP 2,0.5")],
    "rows": [
        row
        for a, pm, vm, pc, vc in _ADP_ROWS
        for row in (
            {"dataset": "mnist", "attack": a, "param": pm, "baseline": vm[0],
             "adp_2_0": vm[1], "adp_2_05": vm[2]},
            {"dataset": "cifar10", "attack": a, "param": pc, "baseline": vc[0],
             "adp_2_0": vc[1], "adp_2_05": vc[2]},
        )
    ],
}

# ---------------------------------------------------------------------------- RCE
_RCE_ROWS = [
    # dataset, attack, confidence (CE, RCE), non-ME (CE, RCE), K-density (CE, RCE)
    ("mnist", "fgsm", (79.7, 98.8), (66.8, 98.6), (98.8, 99.4)),
    ("mnist", "bim", (88.9, 91.7), (70.5, 90.6), (90.0, 91.8)),
    ("mnist", "ilcm", (98.4, 100.0), (50.4, 97.0), (96.2, 98.6)),
    ("mnist", "jsma", (98.6, 100.0), (60.1, 99.4), (97.7, 99.0)),
    ("mnist", "cw", (98.6, 100.0), (64.1, 99.5), (99.4, 99.8)),
    ("mnist", "cw_hc", (0.0, 0.1), (40.0, 93.4), (91.1, 99.6)),
    ("cifar10", "fgsm", (71.5, 92.6), (66.9, 91.4), (99.7, 98.0)),
    ("cifar10", "bim", (0.0, 0.7), (64.6, 70.2), (100.0, 100.0)),
    ("cifar10", "ilcm", (16.4, 64.1), (37.1, 77.8), (84.2, 93.9)),
    ("cifar10", "jsma", (99.2, 99.5), (27.3, 91.9), (85.8, 95.4)),
    ("cifar10", "cw", (99.5, 99.6), (50.2, 94.7), (95.3, 98.2)),
    ("cifar10", "cw_hc", (0.0, 0.2), (28.8, 53.6), (75.4, 91.8)),
]
RCE_DETECTION: dict[str, Any] = {
    "key": "rce_detection",
    "title": "RCE, detection ROC-AUC (%) of (clean correct, successful adversarial) pairs,"
    " CE-trained / RCE-trained ResNet-32",
    "source": "Pang et al., Towards Robust Detection of Adversarial Examples (NeurIPS 2018),"
    " Table 2",
    "kind": "detection",
    "recipe": {"reg_term": "rce"},
    "label_columns": [("dataset", "Data"), ("attack", "Attack")],
    "columns": [("confidence", "Confidence"), ("non_me", "non-ME"),
                ("kernel_density", "K-density")],
    "rows": [
        {"dataset": d, "attack": a, "confidence": c, "non_me": n, "kernel_density": k}
        for d, a, c, n, k in _RCE_ROWS
    ],
}

# ---------------------------------------------------------------------------- MMC
MMC_TABLE: dict[str, Any] = {
    "key": "mmc_cifar10",
    "title": "MMC, CIFAR-10 white-box adaptive attacks on ResNet-32: clean | eps=8/255 PGD10"
    " tar/un, PGD50 tar/un | eps=16/255 the same four (0.0 stands for <= 1)",
    "source": "Pang et al., Rethinking Softmax Cross-Entropy Loss for Adversarial Robustness"
    " (ICLR 2020), Table 2",
    "kind": "reference",
    "recipe": {"reg_term": "mmc"},
    "label_columns": [("method", "Method")],
    "columns": [("clean", "Clean"), ("e8", "eps 8/255"), ("e16", "eps 16/255")],
    "rows": [
        {"method": m, "dataset": "cifar10", "clean": c, "e8": e8, "e16": e16}
        for m, c, e8, e16 in [
            ("SCE", 92.9, (0.0, 3.7, 0.0, 3.6), (0.0, 2.9, 0.0, 2.6)),
            ("Center loss", 92.8, (0.0, 4.4, 0.0, 4.3), (0.0, 3.1, 0.0, 2.9)),
            ("MMLDA", 92.4, (0.0, 16.5, 0.0, 9.7), (0.0, 6.7, 0.0, 5.5)),
            ("L-GM", 92.5, (37.6, 19.8, 8.9, 4.9), (26.0, 11.0, 2.5, 2.8)),
            ("MMC-10 (rand)", 92.3, (43.5, 29.2, 20.9, 18.4), (31.3, 17.9, 8.6, 11.6)),
            ("MMC-10", 92.7, (48.7, 36.0, 26.6, 24.8), (36.1, 25.2, 13.4, 17.5)),
            ("AT-tar (SCE)", 83.7, (70.6, 49.7, 69.8, 47.8), (48.4, 26.7, 31.2, 16.0)),
            ("AT-tar (MMC-10)", 83.0, (69.2, 54.8, 67.0, 53.5), (58.6, 47.3, 44.7, 45.1)),
            ("AT-un (SCE)", 80.9, (69.8, 55.4, 69.4, 53.9), (53.3, 34.1, 38.5, 21.5)),
            ("AT-un (MMC-10)", 81.8, (70.8, 56.3, 70.1, 55.0), (54.7, 37.4, 39.9, 27.7)),
        ]
    ],
}

PUBLISHED_TABLES: list[dict[str, Any]] = [JE_TABLE1, GAL_TABLE2, ADP_TABLE2, RCE_DETECTION,
                                          MMC_TABLE]
