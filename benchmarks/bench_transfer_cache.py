"""Wall time of a transfer-attack suite over several targets, with and without the cache.

Takes a finished ``diversity-training`` recipe run (its surrogate and four targets) and runs the
recipe's transfer attacks (read from its ``targets/plan.json``) on every target twice in the
same process: once with ``transfer_cache: null`` (each target crafts its own examples: the
baseline) and once with a fresh cache folder (the first target crafts, the others read). Prints
both times, their ratio, and checks that the two passes produced identical records.

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
from gal_transfer_paired import targets_of  # same folder: the recipe's targets by name

from robens.evaluate import run_suite


def one_pass(targets: dict[str, Path], recipe_suite: dict, cache: str | None, size: int,
             out: Path) -> tuple[float, list]:
    suite = {**recipe_suite, "name": "bench", "test_size": size, "transfer_cache": cache,
             "metrics": {}}
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
    stage = args.run / "targets"
    targets = targets_of(stage)
    recipe_suite = json.loads((stage / "plan.json").read_text())["suite"]
    recipe_suite["attacks"] = [a for a in recipe_suite["attacks"] if a.get("threat") == "transfer"]
    n_attacks = sum(len(a["eps"]) for a in recipe_suite["attacks"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t_base, v_base = one_pass(targets, recipe_suite, None, args.test_size, tmp / "base")
        t_cache, v_cache = one_pass(targets, recipe_suite, str(tmp / "cache"), args.test_size,
                                    tmp / "cached")
    print(f"{len(targets)} targets x {n_attacks} transfer attacks"
          f" on {args.test_size} images, {args.threads} threads")
    print(f"  no cache (baseline): {t_base:8.1f} s")
    print(f"  cache:               {t_cache:8.1f} s   ({t_base / t_cache:.2f}x faster)")
    print(f"  identical records:   {v_base == v_cache}")


if __name__ == "__main__":
    main()
