"""In-process fuzzing of the whole command line (issue #16, acceptance 2).

Each case is one ``robens`` command line built by a seeded generator over every command
(``train``, ``run``, ``evaluate``, ``attack``, ``report``, ``data``, ``sweep``, ``reproduce``)
from valid, borderline and hostile values, often with generated files: experiment YAMLs
(mutations of a tiny valid config, raw garbage, empty files), sweep grids, suites, records
files, corrupt or truncated checkpoints, paths under a file or in ``/proc``. It runs
``robens.cli.main`` inside typer's ``CliRunner`` isolation (captured stdout and stderr) and
asserts that every case ends in exit 0 (no ``error:`` line), or exit 2 with exactly one
``error:`` line and no traceback; never an uncaught exception.

The expensive steps are real for a few cases only: ``Trainer.fit``, downloads, sweep trials,
recipes and suites are replaced by a stub that raises :class:`Reached` (the command line was
accepted and validated up to the work itself); evaluations and attacks on a tiny synthetic
checkpoint, reports and dry runs are real, and so are a handful of tiny trainings.

Counts: the default suite runs ``QUICK`` = 200 cases (300 took 72 s on 2 cores shared at a
load of 14, so 200 is about 15-25 s on 2 free cores); ``pytest -m fuzz tests/test_fuzz_cli.py``
runs ``LONG`` = 5,000 further cases (another seed stream; about 30 min at that load). Its first
run found 2 broken cases of 5,000 (``reproduce --set data=1``: a TypeError in recipe planning;
``--device meta``: a RuntimeError), both fixed and now tests in tests/test_inputs.py.
``ROBENS_FUZZ_CLI_CASES=N`` changes the default count. A failure lists each failing case's
argv and stderr, so it can be replayed with ``main(argv)``.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from test_data import write_mnist_like as write_idx_dataset
from typer.testing import CliRunner

QUICK = int(os.environ.get("ROBENS_FUZZ_CLI_CASES", "200"))
LONG = 5000
#: cases per command family (weights)
FAMILIES = {"train": 22, "config": 18, "evaluate": 10, "attack": 12, "report": 9, "data": 5,
            "sweep": 9, "reproduce": 3, "run": 4, "tokens": 6}
REAL_TRAININGS = 1  # per run: tiny trainings that are not stubbed


class Reached(Exception):
    """Raised by a stubbed expensive step: the command line was accepted up to the work."""


@dataclass
class Outcome:
    argv: list[str]
    kind: str
    rc: int | str
    err: str
    seconds: float
    problem: str | None = None


@dataclass
class World:
    """The files every case may point at (built once per test)."""

    root: Path
    ckpt_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    real_left: int = REAL_TRAININGS


# ----------------------------------------------------------------------------- values
INTS = [0, 1, 2, 3, 8, 16, -1, -5, 2**31, 2**63 - 1, 2**63, 2**64 + 1, 10**7]
FLOATS = ["0", "0.1", "0.03", "1", "1.5", "-0.1", "nan", "inf", "-inf", "1e400", "1e-300",
          "8/255", "abc", ""]
WORDS = ["", "x", "synthetic", "lenet", "conv3", "pgd", "-", "--", "..", "/", "ça", "a b",
         "x" * 300, "{}", "[1, 2]", "null", "~", "%s", "$HOME"]
DATASETS = ["synthetic", "synth", "fashion-mnist", "fmnist", "mnist", "cifar10", "imagenet", ""]
MODELS = ["lenet", "conv3", "conv4", "resnet20", "vgg99", "LeNet", ""]
OBJECTIVES = ["ce", "ce + 0.5*gal", "ce + 1e400*gal", "ce + -1*gal", "ce + *", "gal", "bogus",
              "ce+ce", "0*ce", "ce + 1e+3*jr", "", "ce + 0.1*cosine", "mmc"]
ATTACKS = ["fgsm", "pgd", "bim", "ifgsm", "mifgsm", "rfgsm", "pgd_cw", "bogus", "", "PGD"]
DEVICES = ["cpu", "auto", "tpu", "cuda:7", "", "cpu:0", "meta", "mps", "gpu"]
YAML_VALUES: list[Any] = [None, True, False, 0, 1, -1, 2**63, 2**70, 0.5, float("nan"),
                          float("inf"), -1e308, "", "x", "a\0b", "/etc/passwd/x", [], [1, "a"],
                          {}, {"k": 1}, "synthetic", "lenet", 1e400]
CONFIG_KEYS = ["name", "seed", "objective", "output_dir", "terms", "data", "model", "training",
               "data.dataset", "data.root", "data.train_size", "data.test_size",
               "data.val_size", "data.batch_size", "data.eval_batch_size", "data.augment.shift",
               "data.augment.noise_eps", "data.augment.noise_mode", "model.arch", "model.archs",
               "model.members", "model.activation", "model.combine", "model.weights",
               "model.vectorize", "model.head", "model.mm_scale", "optimizer.name",
               "optimizer.lr", "optimizer.momentum", "schedule.name", "schedule.milestones",
               "schedule.gamma", "schedule.cycles", "training.epochs", "training.strategy",
               "training.device", "training.threads", "training.grad_clip",
               "training.on_nonfinite", "training.adversarial.attack",
               "training.adversarial.eps", "training.adversarial.sources", "terms.gal",
               "bogus", "model.bogus", "data.augment"]


def tiny_config(out: Path) -> dict[str, Any]:
    return {"name": "fz", "seed": 0,
            "data": {"dataset": "synthetic", "train_size": 32, "test_size": 16, "batch_size": 16},
            "model": {"arch": "lenet", "members": 2},
            "training": {"epochs": 1, "threads": 1}, "output_dir": str(out)}


def set_dotted(cfg: dict[str, Any], key: str, value: Any) -> None:
    node: Any = cfg
    parts = key.split(".")
    for p in parts[:-1]:
        nxt = node.get(p) if isinstance(node, dict) else None
        if not isinstance(nxt, dict):
            nxt = {}
            node[p] = nxt
        node = nxt
    node[parts[-1]] = value


# ----------------------------------------------------------------------------- the world
def write_mnist_like(folder: Path) -> Path:
    """Uncompressed IDX files of a tiny MNIST-like dataset (24 train / 12 test)."""
    return write_idx_dataset(folder, 24, 12, gz=False)


def build_world(root: Path) -> World:
    from robens.cli import main

    write_mnist_like(root / "data" / "fashion-mnist")
    write_mnist_like(root / "data" / "mnist")
    ckpt_dir = root / "ckpt"
    argv = ["train", "--dataset", "synthetic", "--train-size", "32", "--test-size", "16",
            "--members", "2", "--epochs", "1", "--batch-size", "16", "--threads", "1",
            "--no-progress", "-o", str(ckpt_dir)]
    assert main(argv) == 0
    assert main(["evaluate", str(ckpt_dir), "--test-size", "8", "-o", str(root / "evald")]) == 0
    w = World(root, ckpt_dir)
    f = w.files
    blob = (ckpt_dir / "checkpoint.safetensors").read_bytes()
    f["ckpt"] = ckpt_dir / "checkpoint.safetensors"
    f["ckpt_dir"] = ckpt_dir
    f["truncated"] = root / "truncated.safetensors"
    f["truncated"].write_bytes(blob[: len(blob) // 2])
    f["flipped"] = root / "flipped.safetensors"
    f["flipped"].write_bytes(blob[:-40] + bytes(b ^ 0xFF for b in blob[-40:]))
    f["garbage"] = root / "garbage.bin"
    f["garbage"].write_bytes(bytes(range(256)) * 3)
    f["empty"] = root / "empty.yaml"
    f["empty"].write_text("")
    f["a_file"] = root / "plain.txt"
    f["a_file"].write_text("plain")
    f["a_dir"] = root / "somedir"
    f["a_dir"].mkdir()
    f["records"] = root / "evald" / "records.jsonl"
    f["suite_bad"] = root / "suite_bad.yaml"
    f["suite_bad"].write_text("attacks: [{name: bogus}]\nbogus_key: 1\n")
    f["suite_ok"] = root / "suite_ok.yaml"
    f["suite_ok"].write_text("test_size: 8\nattacks: []\n")
    return w


# ----------------------------------------------------------------------------- generators
def pick_path(rng: random.Random, w: World, case: Path, kind: str) -> str:
    """An input path: mostly sensible for ``kind``, often hostile."""
    f = w.files
    sensible = {"ckpt": [f["ckpt"], f["ckpt_dir"]], "out": [case / "out", case / "o.json"],
                "file": [case / "x.npz"], "records": [f["records"], w.root / "evald"]}[kind]
    hostile = [f["truncated"], f["flipped"], f["garbage"], f["empty"], f["a_file"], f["a_dir"],
               f["a_file"] / "x", case / "missing", Path("/proc/robens-fuzz"), Path("/"),
               Path("/etc/passwd"), Path("relative/nested/out")]
    choice = rng.choice(sensible) if rng.random() < 0.6 else rng.choice(hostile)
    return str(choice)


def maybe(rng: random.Random, p: float = 0.5) -> bool:
    return rng.random() < p


def gen_train(rng: random.Random, w: World, case: Path) -> list[str]:
    argv = ["train", "--no-progress"]
    base = {"--dataset": "synthetic", "--train-size": "32", "--test-size": "16",
            "--members": "2", "--epochs": "1", "--batch-size": "16", "--threads": "1"}
    palettes: dict[str, list[Any]] = {
        "--dataset": DATASETS, "--train-size": INTS, "--test-size": INTS, "--members": INTS,
        "--epochs": INTS, "--batch-size": INTS, "--threads": INTS, "--model": MODELS,
        "--activation": ["relu", "leaky_relu", "tanh", ""], "--combine": ["logits", "probs",
        "log_probs", "max"], "--objective": OBJECTIVES, "--optimizer": ["adam", "sgd", "rmsprop"],
        "--lr": FLOATS, "--schedule": ["constant", "step", "cosine", "cyclic_cosine", "bad"],
        "--strategy": ["joint", "bagging", "snapshot", "dverge", "bad"], "--device": DEVICES,
        "--seed": INTS, "--name": WORDS, "--data-root": [str(w.root / "data"), "/nonexistent",
        str(w.files["a_file"]), ""],
    }
    flags = dict(base) if maybe(rng, 0.8) else {}
    for key in rng.sample(sorted(palettes), rng.randint(0, 4)):
        flags[key] = str(rng.choice(palettes[key]))
    for k, v in flags.items():
        argv += [k, v]
    for _ in range(rng.choice([0, 0, 1, 2])):
        key = rng.choice(CONFIG_KEYS)
        argv += ["--set", f"{key}={rng.choice(['1', '-1', '.nan', 'x', '[1]', '{a: 1}', '', '2'])}"]
    if maybe(rng, 0.1):
        argv += ["--set", rng.choice(["novalue", "=3", "a..b=1", ".=2"])]
    if maybe(rng, 0.1):
        argv.append("--resume")
    argv += ["-o", pick_path(rng, w, case, "out")] if maybe(rng, 0.9) else []
    return argv


def gen_config_file(rng: random.Random, w: World, case: Path) -> Path:
    path = case / "cfg.yaml"
    roll = rng.random()
    if roll < 0.08:
        path.write_bytes(rng.choice([b"", b"# comment only\n", b"{}\n", b"[1, 2]\n", b"3\n",
                                     b"model: [unclosed\n", b"\xff\xfe\x00bad", b"a: b: c\n",
                                     b"!!python/object:os.system {}\n", b"- - -\n"]))
        return path
    cfg = tiny_config(case / "run")
    for _ in range(rng.randint(0, 3)):
        op = rng.random()
        key = rng.choice(CONFIG_KEYS)
        if op < 0.75:
            set_dotted(cfg, key, rng.choice(YAML_VALUES))
        else:
            cfg.pop(key.split(".")[0], None)
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def gen_config(rng: random.Random, w: World, case: Path) -> list[str]:
    argv = ["train", str(gen_config_file(rng, w, case)), "--no-progress"]
    if maybe(rng, 0.3):
        argv += ["--set", f"{rng.choice(CONFIG_KEYS)}={rng.choice(['0', '3', 'abc', '.inf'])}"]
    return argv


def gen_run(rng: random.Random, w: World, case: Path) -> list[str]:
    argv = ["run", str(gen_config_file(rng, w, case)), "--no-progress", "--no-report"]
    if maybe(rng, 0.4):
        argv += ["--suite", str(rng.choice([w.files["suite_bad"], w.files["garbage"],
                                            case / "missing.yaml", w.files["empty"]]))]
    return argv


def gen_evaluate(rng: random.Random, w: World, case: Path) -> list[str]:
    argv = ["evaluate", pick_path(rng, w, case, "ckpt"), "--no-progress",
            "--test-size", str(rng.choice([8, 8, 16, 0, -3, 10**7]))]
    if maybe(rng, 0.3):
        argv += ["--dataset", rng.choice(DATASETS), "--data-root",
                 rng.choice([str(w.root / "data"), "/nonexistent"])]
    if maybe(rng, 0.2):
        argv.append("--force")
    if maybe(rng, 0.3):
        argv += ["--batch-size", str(rng.choice(INTS[:9]))]
    if maybe(rng, 0.2):
        argv += ["--seed", str(rng.choice(INTS))]
    if maybe(rng, 0.2):
        argv += ["--device", rng.choice(DEVICES)]
    if maybe(rng, 0.15):
        argv += ["--suite", str(rng.choice([w.files["suite_bad"], w.files["suite_ok"],
                                            w.files["garbage"], case / "nope.yaml"]))]
    argv += ["-o", pick_path(rng, w, case, "out")]
    return argv


def gen_attack(rng: random.Random, w: World, case: Path) -> list[str]:
    argv = ["attack", pick_path(rng, w, case, "ckpt"), "--attack", rng.choice(ATTACKS),
            "--eps", rng.choice(FLOATS[:5] if maybe(rng, 0.6) else FLOATS),
            "--steps", str(rng.choice([1, 1, 2, 0, -1])),
            "--test-size", str(rng.choice([4, 8, 8, 0, -1, 10**7])),
            "--batch-size", str(rng.choice([4, 8, 0]))]
    if maybe(rng, 0.2):
        argv += ["--alpha", rng.choice(FLOATS)]
    if maybe(rng, 0.2):
        argv += ["--loss", rng.choice(["ce", "cw", "dlr", "bogus"])]
    if maybe(rng, 0.2):
        argv += ["--norm", rng.choice(["linf", "l2", "l1", "bogus"])]
    if maybe(rng, 0.15):
        argv += ["--surrogate", pick_path(rng, w, case, "ckpt")]
    if maybe(rng, 0.3):
        argv += ["--save", pick_path(rng, w, case, "file")]
    if maybe(rng, 0.2):
        argv += ["--seed", str(rng.choice(INTS))]
    if maybe(rng, 0.15):
        argv += ["--device", rng.choice(DEVICES)]
    argv += ["-o", pick_path(rng, w, case, "out")]
    return argv


def gen_report(rng: random.Random, w: World, case: Path) -> list[str]:
    dirs: list[str] = []
    for _ in range(rng.randint(1, 2)):
        roll = rng.random()
        if roll < 0.25:
            dirs.append(pick_path(rng, w, case, "records"))
            continue
        d = case / f"runs{len(dirs)}"
        d.mkdir(parents=True, exist_ok=True)
        lines = []
        good = w.files["records"].read_text().splitlines()
        for _ in range(rng.randint(0, 4)):
            lines.append(rng.choice([
                rng.choice(good) if maybe(rng, 0.3) else "not json", "{", "[]", "null", "3",
                '{"metric": "robust_accuracy", "value": 0.5, "attack": "pgd"}',
                '{"metric": "robust_accuracy", "value": "x", "attack": "pgd", "eps": 0.1}',
                '{"metric": "transfer_matrix_accuracy", "value": 0.1, "attack": "pgd",'
                ' "eps": 0.1, "source": "a", "target": 1}', '{"metric": 5, "value": 1}',
                '{"metric": "clean_accuracy", "value": 0.9, "threat_model": 7}',
                '{"metric": "clean_accuracy", "value": 0.9, "method": {"a": 1}}',
            ]))
        name = rng.choice(["records.jsonl", "results.jsonl", "attack-pgd-eps0.1.json"])
        (d / name).write_text("\n".join(lines) + ("\n" if lines else ""))
        dirs.append(str(d if maybe(rng, 0.7) else d / name))
    return ["report", *dirs, "-o", pick_path(rng, w, case, "out")]


def gen_data(rng: random.Random, w: World, case: Path) -> list[str]:
    argv = ["data", rng.choice(["info", "info", "download"]), rng.choice(DATASETS + ["x"])]
    if maybe(rng, 0.5):
        argv += ["--root", rng.choice([str(w.root / "data"), "/nonexistent", str(case / "d"),
                                       str(w.files["a_file"]), ""])]
    return argv


def gen_sweep(rng: random.Random, w: World, case: Path) -> list[str]:
    grid: dict[str, Any] = {"name": "g", "base": tiny_config(case / "b"),
                            "axes": {"seed": [0, 1]}, "output_dir": str(case / "sweep")}
    for _ in range(rng.randint(0, 2)):
        key = rng.choice(["axes", "zip", "base", "resources", "name", "output_dir", "suite",
                          "axes.seed", "axes.model.members", "axes.bogus", "resources.cpus",
                          "resources.gpus", "base.model.members", "bogus"])
        set_dotted(grid, key, rng.choice(YAML_VALUES + [[[1, 2]], ["name", "seed"]]))
    path = case / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, allow_unicode=True), encoding="utf-8")
    argv = ["sweep", str(path if maybe(rng, 0.9) else w.files["garbage"]), "--no-progress"]
    if maybe(rng, 0.5):
        argv.append("--dry-run")
    argv += ["--backend", rng.choice(["serial", "serial", "ray", "bogus"])]
    if maybe(rng, 0.3):
        argv += ["--num-cpus", str(rng.choice([1, 2, 0, -1]))]
    if maybe(rng, 0.2):
        argv += ["--max-concurrent", str(rng.choice([1, 0, -2]))]
    if maybe(rng, 0.2):
        argv += ["--address", rng.choice(["127.0.0.1:1", "bad:port", "host:99999", ":1",
                                          "ray://127.0.0.1:1", "local"])]
    return argv


def gen_reproduce(rng: random.Random, w: World, case: Path) -> list[str]:
    from robens.choices import recipes

    names = [n.strip() for n in recipes().split("|")] + ["bogus", str(w.files["garbage"])]
    argv = ["reproduce", rng.choice(names)]
    if maybe(rng, 0.15):
        argv = ["reproduce", "--list"]
    argv += ["--scale", rng.choice(["quick", "quick", "paper", "bogus"])]
    if maybe(rng, 0.4):
        argv += ["--dataset", rng.choice(DATASETS + ["all"])]
    argv += ["--dry-run"] if maybe(rng, 0.7) else ["--backend", "serial"]
    if maybe(rng, 0.3):
        argv += ["--set", f"{rng.choice(CONFIG_KEYS)}={rng.choice(['1', 'x', '.nan'])}"]
    argv += ["-o", str(case / "rep")]
    return argv


TOKENS = ["--dataset", "--model", "--members", "--epochs", "--lr", "--set", "--out", "--eps",
          "--attack", "--steps", "--seed", "--batch-size", "--resume", "--objective", "--force",
          "--dry-run", "--backend", "--num-cpus", "synthetic", "lenet", "-1", "0", "3", "1e9",
          "nan", "pgd", "x=1", "model.members=0", "--help", "-h", "--version", "--bogus", "-x",
          "--no-progress", "serial"]
COMMANDS = [["train"], ["evaluate"], ["attack"], ["report"], ["sweep"], ["reproduce"], ["run"],
            ["data"], ["data", "info"], ["data", "download"], ["bogus"], []]


def gen_tokens(rng: random.Random, w: World, case: Path) -> list[str]:
    return rng.choice(COMMANDS) + [rng.choice(TOKENS) for _ in range(rng.randint(0, 6))]


GENERATORS = {"train": gen_train, "config": gen_config, "evaluate": gen_evaluate,
              "attack": gen_attack, "report": gen_report, "data": gen_data, "sweep": gen_sweep,
              "reproduce": gen_reproduce, "run": gen_run, "tokens": gen_tokens}


# ----------------------------------------------------------------------------- running
def check_outcome(rc: int | str, err: str) -> str | None:
    """Why an outcome breaks the contract (``None`` when it keeps it)."""
    if "Traceback" in err:
        return "a traceback on stderr"
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if rc == "reached" or rc == 0:
        return f"exit {rc!r} with an error line" if errors else None
    if rc == 2:
        return None if len(errors) == 1 else f"exit 2 with {len(errors)} error: lines"
    return f"exit status {rc!r}"


def run_case(argv: list[str], kind: str) -> Outcome:
    from robens.cli import main

    runner = CliRunner()
    t = time.monotonic()
    problem = None
    with runner.isolation() as (out, err, _):
        try:
            rc: int | str = main(argv)
        except Reached:
            rc = "reached"
        except BaseException as exc:  # noqa: BLE001 - the very thing this harness looks for
            rc = "uncaught"
            problem = f"uncaught {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        text = err.getvalue().decode("utf-8", "replace")
    if problem is None:
        problem = check_outcome(rc, text)
    return Outcome(argv, kind, rc, text, time.monotonic() - t, problem)


@pytest.fixture
def fuzz_world(tmp_path, monkeypatch):
    """Stubs for the expensive steps, a sandboxed data folder and HOME, the shared files."""
    import robens.console
    import robens.data
    import robens.recipes
    import robens.sweep
    from robens.data import datasets as ds
    from robens.training import trainer as tr

    monkeypatch.setattr(ds, "SYSTEM_DIRS", {})
    monkeypatch.setenv("ROBENS_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    world = build_world(tmp_path)
    real_fit = tr.Trainer.fit

    def fit(self, resume=False):
        tiny = self.cfg.data.dataset == "synthetic" and len(self.train_set) <= 64 and \
            self.cfg.training.epochs == 1 and self.cfg.model.members <= 2
        if tiny and world.real_left > 0:
            world.real_left -= 1
            return real_fit(self, resume=resume)
        raise Reached("training")

    def stub(*_a, **_k):
        raise Reached("stubbed")

    monkeypatch.setattr(tr.Trainer, "fit", fit)
    monkeypatch.setattr(robens.data, "download_dataset", stub)
    monkeypatch.setattr("robens.data.download.download_dataset", stub)
    monkeypatch.setattr(robens.sweep, "_iter_ray", stub)
    monkeypatch.setattr(robens.sweep, "_iter_serial", stub)
    monkeypatch.setattr(robens.recipes, "run_recipe", stub)
    monkeypatch.setattr(robens.console, "run_suite", stub)
    yield world
    torch.set_num_threads(threads)


def fuzz(world: World, n: int, stream: str) -> tuple[Counter, list[Outcome]]:
    """Run ``n`` generated cases of seed stream ``stream``; the outcome counts and failures."""
    kinds = list(FAMILIES)
    weights = [FAMILIES[k] for k in kinds]
    counts: Counter = Counter()
    failures: list[Outcome] = []
    slowest: list[Outcome] = []
    seconds: Counter = Counter()
    for i in range(n):
        rng = random.Random(f"{stream}-{i}")
        kind = rng.choices(kinds, weights)[0]
        case = world.root / "cases" / f"{i}"
        case.mkdir(parents=True)
        argv = GENERATORS[kind](rng, world, case)
        outcome = run_case(argv, kind)
        counts[(kind, str(outcome.rc))] += 1
        counts["total"] += 1
        seconds[kind] += outcome.seconds
        if outcome.problem:
            failures.append(outcome)
        slowest = sorted([*slowest, outcome], key=lambda o: -o.seconds)[:3]
        shutil.rmtree(case, ignore_errors=True)
    summary = ", ".join(f"{o.seconds:.1f}s {o.argv[:3]}" for o in slowest)
    print(f"\n{counts['total']} CLI cases; slowest: {summary}")
    print("  seconds by family: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.most_common()))
    for key in sorted(k for k in counts if k != "total"):
        print(f"  {key[0]:10s} {key[1]:>9s}: {counts[key]}")
    return counts, failures


def report_failures(failures: list[Outcome]) -> str:
    lines = [f"{len(failures)} case(s) broke the CLI contract:"]
    for o in failures[:8]:
        lines.append(f"- {o.kind} {o.argv!r}: {o.problem}\n  stderr: {o.err[-800:]!r}")
    return "\n".join(lines)


def _check_counts(counts: Counter, n: int) -> None:
    assert counts["total"] == n
    succeeded = sum(v for k, v in counts.items() if k != "total" and k[1] == "0")
    refused = sum(v for k, v in counts.items() if k != "total" and k[1] == "2")
    assert succeeded > 0 and refused > 0, counts  # both kinds of ending are exercised


def test_fuzz_cli_quick(fuzz_world):
    counts, failures = fuzz(fuzz_world, QUICK, "quick")
    assert not failures, report_failures(failures)
    _check_counts(counts, QUICK)
    assert fuzz_world.real_left < REAL_TRAININGS  # some tiny training really ran


@pytest.mark.fuzz
def test_fuzz_cli_long(fuzz_world):
    counts, failures = fuzz(fuzz_world, LONG, "long")
    assert not failures, report_failures(failures)
    _check_counts(counts, LONG)


def test_contract_checker():
    """The checker itself: what counts as a clean ending."""
    assert check_outcome(0, "") is None
    assert check_outcome(2, "error: bad --eps\n  detail\n") is None
    assert check_outcome(2, "warning: x\nerror: y\n") is None
    assert check_outcome(2, "") is not None
    assert check_outcome(1, "error: y\n") is not None
    assert check_outcome(2, "error: a\nerror: b\n") is not None
    assert check_outcome(2, "error: x\nTraceback (most recent call last):\n") is not None
    assert check_outcome(0, "error: x\n") is not None
    assert math.isfinite(QUICK) and QUICK >= 1
