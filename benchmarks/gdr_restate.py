"""The GDR recipe's check re-stated from the figures in ``docs/results.md`` (no re-run).

The check (``robens/recipes/summaries/gdr.py``): Spearman's rho between each ensemble's GDR and
its white-box attack success rate per (attack, eps) cell, a two-sided permutation p-value
(:func:`robens.stats.spearman_permutation`) and the "most" rule
(:func:`robens.stats.claim_verdict`).

- quick run: the per-ensemble table (GDR and success rates, rounded as printed there);
- confirmatory run: only rho per cell is printed (n = 16). Without ties the permutation
  distribution of Spearman's rho depends on n alone, so each p is the share of seeded random
  orderings of 16 ranks whose |rho| reaches the stated one.

    python benchmarks/gdr_restate.py
"""

from __future__ import annotations

from robens.stats import Finding, claim_verdict, spearman_permutation, spearman_untied_p

#: docs/results.md, GDR quick run: GDR, then ASR % for FGSM, PGD, MI-FGSM at eps .03/.06/.09
QUICK = """
0.0082 16.0 36.2 52.2 16.0 38.5 54.5 16.0 37.6 53.4
0.0100 11.1 19.4 28.7 13.6 27.0 40.0 13.4 25.9 36.8
0.0103 9.7 24.3 48.9 12.0 36.9 57.9 10.7 34.6 57.9
0.0107 11.9 24.3 38.2 14.2 30.1 45.1 13.2 27.6 41.5
0.0224 10.1 21.1 37.1 12.0 30.5 48.4 11.8 27.5 45.5
0.0263 11.0 23.5 35.5 12.5 27.3 44.6 12.2 25.7 40.5
0.0452 9.0 20.0 36.0 11.7 33.6 53.3 11.4 31.4 48.9
0.0666 10.2 21.0 32.2 11.2 26.1 45.9 11.0 23.7 39.5
0.3068 13.9 27.3 50.8 13.9 29.3 56.1 13.9 29.0 53.7
0.3153 14.7 33.5 52.7 14.7 36.1 54.9 15.0 34.7 54.2
"""
CELLS = [f"{a}@{e}" for a in ("fgsm", "pgd", "mifgsm") for e in (0.03, 0.06, 0.09)]
#: docs/results.md, GDR confirmatory run: rho per cell, n = 16 ensembles
CONFIRM = dict(zip(CELLS, (0.83, 0.83, 0.94, 0.62, 0.75, 0.76, 0.68, 0.81, 0.87), strict=True))
TEST = "Spearman rho, permutation test (two-sided)"


def main() -> None:
    rows = [[float(v) for v in line.split()] for line in QUICK.strip().splitlines()]
    found = []
    for j, cell in enumerate(CELLS):
        rho, p = spearman_permutation([r[0] for r in rows], [r[1 + j] for r in rows])
        found.append(Finding(cell, rho, p, TEST))
        print(f"quick   {cell:<12} rho {rho:+.2f}  p {p:.2g}  (n = {len(rows)})")
    verdict, _, reason = claim_verdict(found, "most", None)
    print(f"quick verdict: {verdict.value} ({reason})")
    found = []
    for cell, rho in CONFIRM.items():
        p = spearman_untied_p(rho, 16, perms=100_000)
        found.append(Finding(cell, rho, p, TEST))
        print(f"confirm {cell:<12} rho {rho:+.2f}  p {p:.2g}  (n = 16)")
    verdict, _, reason = claim_verdict(found, "most", None)
    print(f"confirm verdict: {verdict.value} ({reason})")


if __name__ == "__main__":
    main()
