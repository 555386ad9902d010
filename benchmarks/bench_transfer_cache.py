"""Wall time of a transfer-attack suite over several targets, with and without the cache.

Takes a finished ``diversity-training`` recipe run (its surrogate and four targets) and runs the
recipe's transfer attacks on every target twice in the same process: once with
``transfer_cache: null`` (each target crafts its own examples: the baseline) and once with a
fresh cache folder (the first target crafts, the others read). Prints both times, their ratio,
and checks that the two passes produced identical records.

Usage::

    python benchmarks/bench_transfer_cache.py \\
        runs/reproduce/diversity-training/fashion-mnist-quick --test-size 500
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from robens.evaluate import run_suite

ATTACKS = [
    {"attack": "fgsm", "eps": [0.1, 0.3], "threat": "transfer", "surrogate": "s"},
    {"attack": "rfgsm", "eps": [0.1, 0.3], "threat": "transfer", "surrogate": "s"},
    {"attack": "ifgsm", "eps": [0.1, 0.3], "threat": "transfer", "surrogate": "s",
     "params": {"steps": 10}},
    {"attack": "mifgsm", "eps": [0.1, 0.3], "threat": "transfer", "surrogate": "s",
     "params": {"steps": 10, "decay": 1.0}},
    {"attack": "pgd_cw", "eps": [0.1, 0.3], "threat": "transfer", "surrogate": "s",
     "params": {"steps": 30, "kappa": 50.0, "alpha": 0.01}},
]


def trials(stage: Path) -> dict[str, Path]:
    out = {}
    for trial in sorted((stage / "trials").iterdir()):
        name = json.loads((trial / "trial.json").read_text())["config"]["name"]
        out[name] = trial / "checkpoint.safetensors"
    return out


def one_pass(targets: dict[str, Path], surrogate: Path, cache: str | None, size: int,
             out: Path) -> tuple[float, list]:
    suite = {"name": "bench", "test_size": size, "batch_size": 250, "transfer_cache": cache,
             "surrogates": {"s": {"checkpoint": str(surrogate)}}, "attacks": ATTACKS}
    t0 = time.perf_counter()
    values = []
    for name, ckpt in targets.items():
        res = run_suite(ckpt, suite, out=out / name, progress=False, echo=None)
        values.append(sorted((name, r["attack"], r["eps"], r["metric"], r["value"])
                             for r in res["records"] if r["threat_model"] == "transfer"))
    return time.perf_counter() - t0, values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--test-size", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    targets = trials(args.run / "targets")
    surrogate = trials(args.run / "pretrained")["surrogate"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t_base, v_base = one_pass(targets, surrogate, None, args.test_size, tmp / "base")
        t_cache, v_cache = one_pass(targets, surrogate, str(tmp / "cache"), args.test_size,
                                    tmp / "cached")
    print(f"{len(targets)} targets x {sum(len(a['eps']) for a in ATTACKS)} transfer attacks"
          f" on {args.test_size} images, {args.threads} threads")
    print(f"  no cache (baseline): {t_base:8.1f} s")
    print(f"  cache:               {t_cache:8.1f} s   ({t_base / t_cache:.2f}x faster)")
    print(f"  identical records:   {v_base == v_cache}")


if __name__ == "__main__":
    main()
