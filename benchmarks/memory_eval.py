"""Peak memory of evaluating a checkpoint on 1,000 vs 10,000 test images (streamed batches).

Each size runs in a fresh subprocess and reports its peak resident set size (ru_maxrss).

    python benchmarks/memory_eval.py runs/main/checkpoint.safetensors
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys
from robens.evaluate import evaluate_clean_checkpoint
ckpt, n, out, dataset = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] or None
r = evaluate_clean_checkpoint(ckpt, test_size=n, out=out, batch_size=500, dataset=dataset)
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"n": r["n"], "accuracy": r["ensemble"], "peak_mib": peak_kib / 1024}))
"""


def measure(checkpoint: str, n: int, out: str, dataset: str = "") -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, checkpoint, str(n), out, dataset],
        check=True, capture_output=True, text=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--large", type=int, default=10000)
    ap.add_argument("--dataset", default="")
    ap.add_argument("--out", default="/tmp/robens-memory-eval")
    args = ap.parse_args()
    small = measure(args.checkpoint, args.small, args.out, args.dataset)
    large = measure(args.checkpoint, args.large, args.out, args.dataset)
    ratio = large["peak_mib"] / small["peak_mib"]
    print(f"evaluate {small['n']:>6} images: peak RSS {small['peak_mib']:8.1f} MiB")
    print(f"evaluate {large['n']:>6} images: peak RSS {large['peak_mib']:8.1f} MiB")
    print(f"ratio large/small = {ratio:.3f} (bound 1.5)")


if __name__ == "__main__":
    main()
