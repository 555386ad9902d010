"""Report figures of images: clean and adversarial examples per attack, and the universal
perturbations themselves.

The attack units store a few examples per unit (``examples_file``) and the universal unit its
perturbation (``delta_file``) as ``.npz`` arrays beside the records (paths relative to the
run folder, read with ``allow_pickle=False``); a record without them, or whose file is gone,
is left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from robens.report.plotting import THREAT_TITLES, Figure, finish, plt
from robens.report.runs import Run

#: examples (clean + adversarial pairs) per row, rows at most
PAIRS = 4
MAX_ROWS = 12


def _arrays(run: Run, rec: dict[str, Any], key: str) -> dict[str, np.ndarray] | None:
    """The arrays of ``rec[key]`` (a path inside the run folder), or ``None``."""
    rel = rec.get(key)
    if not rel:
        return None
    root = Path(run.run_dir).resolve()
    path = (root / str(rel)).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError):
        return None


def _rgb(x: np.ndarray) -> np.ndarray:
    """A CHW image in [0, 1] as HWC RGB (grey images repeated over the channels)."""
    x = np.clip(np.asarray(x, dtype=float), 0, 1)
    if x.shape[0] == 1:
        x = np.repeat(x, 3, axis=0)
    return np.transpose(x[:3], (1, 2, 0))


def montage(a: dict[str, np.ndarray], pairs: int = PAIRS, gap: int = 2) -> np.ndarray:
    """One row of ``pairs`` (clean, adversarial) images side by side, white gaps between."""
    tiles = []
    for j in range(min(pairs, len(a["x"]))):
        for key in ("x", "x_adv"):
            tiles.append(_rgb(a[key][j]))
    h, w = tiles[0].shape[:2]
    out = np.ones((h, len(tiles) * (w + gap) - gap, 3))
    for i, t in enumerate(tiles):
        out[:, i * (w + gap):i * (w + gap) + w] = t
    return out


def _attack_keys(run: Run) -> list[tuple[str, str, float]]:
    keys = {(r.get("threat_model", "white_box"), r["attack"], float(r["eps"]))
            for r in run.robust() if r.get("examples_file")}
    order = list(THREAT_TITLES)
    return sorted(keys, key=lambda k: (order.index(k[0]) if k[0] in order else 9, k[1], k[2]))


def example_rows(runs: list[Run]) -> list[tuple[str, dict[str, np.ndarray]]]:
    """``(row title, arrays)`` of every run and attack with stored examples."""
    rows = []
    for run in runs:
        for threat, attack, eps in _attack_keys(run):
            rec = run.best("robust_accuracy", threat_model=threat, attack=attack, eps=eps)
            arrays = _arrays(run, rec or {}, "examples_file")
            if arrays is not None and len(arrays.get("x", ())):
                title = f"{run.label}: {THREAT_TITLES.get(threat, threat)} {attack} eps={eps:g}"
                rows.append((title, arrays))
    return rows[:MAX_ROWS]


def fig_examples(runs: list[Run], path: Path) -> Figure | None:
    rows = example_rows(runs)
    if not rows:
        return None
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.3 * 2 * PAIRS, 1.9 * len(rows)),
                             squeeze=False)
    for ax, (title, a) in zip(axes[:, 0], rows, strict=True):
        img = montage(a)
        ax.imshow(img, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=8, loc="left")
        h, w = a["x"].shape[-2:]
        ax.set_ylim(h * 1.3, -0.5)  # a band under the images for their captions
        for side in ax.spines.values():
            side.set_visible(False)
        for j in range(min(PAIRS, len(a["x"]))):
            label = int(a["label"][j])
            for half, pred in enumerate(("pred_clean", "pred_adv")):
                p = int(a[pred][j])
                ax.text((2 * j + half) * (w + 2) + w / 2, img.shape[0] + 1,
                        f"label {label}: {p}" if half == 0 else f"adv: {p}", ha="center",
                        va="top",
                        fontsize=7, color="black" if p == label else "#b00000")
    return finish(
        fig, path, "Example clean and adversarial images",
        "The first test images of each attack's sample, in pairs: the clean image (left)"
        " beside its adversarial example (right), under them the true label and the"
        " ensemble's predictions (red: wrong). Rows name the run, threat model, attack and eps.",
    )


def fig_uap(runs: list[Run], path: Path) -> Figure | None:
    panels = []
    for run in runs:
        for r in run.select("robust_accuracy", threat_model="universal"):
            arrays = _arrays(run, r, "delta_file")
            if arrays is not None and "delta" in arrays:
                panels.append((f"{run.label}\neps={float(r['eps']):g}", arrays["delta"],
                               float(r["eps"])))
    if not panels:
        return None
    panels = panels[:MAX_ROWS]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9), squeeze=False)
    for ax, (title, delta, eps) in zip(axes[0], panels, strict=True):
        delta = np.asarray(delta, dtype=float).reshape(-1, *np.shape(delta)[-2:])
        scale = eps if eps > 0 else max(float(np.abs(delta).max()), 1e-12)
        if delta.shape[0] == 1:
            im = ax.imshow(delta[0], cmap="seismic", vmin=-scale, vmax=scale)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        else:
            ax.imshow(np.clip(np.transpose(delta, (1, 2, 0)) / (2 * scale) + 0.5, 0, 1))
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    return finish(
        fig, path, "Universal adversarial perturbations",
        "The SGD-UAP perturbation itself (one image added to every input), on the scale"
        " [-eps, eps]: red adds intensity, blue removes it (colour images: grey is zero).",
    )
