"""Sweeps: grid expansion and validation, local Ray, resume, and SIGKILL crash consistency."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import yaml

from robens.checkpoint import load_checkpoint, read_resume_state
from robens.cli import main
from robens.errors import ConfigError
from robens.sweep import (
    SweepError,
    _iter_ray,
    plan_sweep,
    run_sweep,
    trial_id,
    trial_status,
)
from robens.utils import atomic_write_text

REPO = Path(__file__).resolve().parents[1]

TINY_BASE = {
    "data": {"dataset": "synthetic", "train_size": 200, "test_size": 100, "batch_size": 50},
    "model": {"arch": "lenet", "members": 1},
    "training": {"epochs": 1, "threads": 1},
}


def tiny_grid(tmp_path: Path, **over) -> dict:
    grid = {"name": "tiny", "base": TINY_BASE, "axes": {"seed": [0, 1]},
            "output_dir": str(tmp_path / "sweep")}
    grid.update(over)
    return grid


def write_grid(path: Path, grid: dict) -> Path:
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


# ---------------------------------------------------------------------------- expansion
def test_expansion_product_zip_ids_and_configs(tmp_path):
    grid = tiny_grid(tmp_path, axes={
        "name": ["ce", "gal"],
        "objective": ["ce", "ce + 0.5*gal"],
        "model.members": [1, 3],
        "seed": [0, 1],
    }, zip=[["name", "objective"]])
    plan = plan_sweep(grid)
    assert len(plan.trials) == 2 * 2 * 2  # name and objective vary together
    pairs = {(t.config.name, t.config.objective) for t in plan.trials}
    assert pairs == {("ce", "ce"), ("gal", "ce + 0.5*gal")}
    assert len({t.id for t in plan.trials}) == 8
    t = plan.trials[-1]
    assert t.overrides == {"name": "gal", "objective": "ce + 0.5*gal", "model.members": 3,
                           "seed": 1}
    assert t.config.model.members == 3 and t.config.seed == 1
    assert t.config.data.train_size == 200  # from the base
    assert t.run_dir == (tmp_path / "sweep" / "trials" / t.id).absolute()
    assert t.id == trial_id(dict(reversed(t.overrides.items())))  # key order is irrelevant
    assert "name=gal" in t.name and "seed=1" in t.name
    # the same grid with axes listed in another order gives the same ids
    grid2 = dict(grid, axes=dict(reversed(grid["axes"].items())))
    assert {x.id for x in plan_sweep(grid2).trials} == {x.id for x in plan.trials}


def test_base_and_suite_paths_are_relative_to_the_grid_file(tmp_path, monkeypatch):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "base.yaml").write_text(yaml.safe_dump(TINY_BASE))
    (folder / "suite.yaml").write_text("attacks: []\n")
    path = write_grid(folder / "grid.yaml",
                      tiny_grid(tmp_path, base="base.yaml", suite="suite.yaml"))
    monkeypatch.chdir(tmp_path)
    plan = plan_sweep(path)
    assert plan.trials[0].config.data.test_size == 100
    assert plan.suite == str((folder / "suite.yaml").absolute())
    single = plan_sweep(tiny_grid(tmp_path, axes={}))
    assert len(single.trials) == 1 and single.trials[0].name == "base"


def test_example_grid_is_valid(tmp_path):
    plan = plan_sweep(REPO / "configs" / "sweeps" / "example.yaml", output_dir=tmp_path)
    assert len(plan.trials) == 6
    assert {t.config.objective for t in plan.trials} == {"ce", "ce + 0.5*gal", "ce + 1.0*gal"}


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        ({"bogus": 1}, ["bogus", "unknown key"]),
        ({"axes": {"seed": 0}}, ["axes.seed"]),
        ({"axes": {"seed": []}}, ["seed", "no values"]),
        ({"axes": {"seed": [0, 0]}}, ["seed", "repeats"]),
        ({"axes": {"output_dir": ["a", "b"]}}, ["output_dir"]),
        ({"axes": {"model": [{}], "model.members": [1]}}, ["overlap"]),
        ({"zip": [["seed", "name"]]}, ["'name'", "not an axis"]),
        ({"axes": {"seed": [0, 1], "name": ["a"]}, "zip": [["seed", "name"]]},
         ["equal lengths", "seed: 2", "name: 1"]),
        ({"axes": {"seed": [0, 1], "model.members": [1, 0]}},
         ["trial 1", "model.members=0", "model.members:"]),
        ({"axes": {"model.memberz": [1]}}, ["trial 0", "model.memberz", "unknown key"]),
        ({"axes": {"terms.jr.n_proj": [1]}}, ["trial 0", "objective", "jr"]),
        ({"base": "missing.yaml"}, ["missing.yaml", "not found"]),
    ],
)
def test_grid_errors_name_the_key_and_trial(tmp_path, change, needles):
    with pytest.raises(ConfigError) as info:
        plan_sweep(tiny_grid(tmp_path, **change), root=tmp_path)
    for needle in needles:
        assert needle in str(info.value), str(info.value)
    assert not (tmp_path / "sweep").exists()  # nothing ran, nothing was written


def test_missing_ray_is_a_clear_error_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match="pip install ray"):
        run_sweep(tiny_grid(tmp_path), backend="ray", echo=None)
    assert not (tmp_path / "sweep").exists()
    with pytest.raises(ConfigError, match="backend"):
        run_sweep(tiny_grid(tmp_path), backend="dask", echo=None)


def test_refuses_a_trial_folder_written_by_another_config(tmp_path):
    plan = plan_sweep(tiny_grid(tmp_path))
    t = plan.trials[0]
    t.run_dir.mkdir(parents=True)
    (t.run_dir / "trial.json").write_text(json.dumps({"config_hash": "0" * 16}))
    assert trial_status(t) == "conflict" and trial_status(plan.trials[1]) == "pending"
    with pytest.raises(ConfigError, match="different config"):
        run_sweep(plan, backend="serial", progress=False, echo=None)
    assert not any(tr.run_dir.joinpath("checkpoint.safetensors").exists() for tr in plan.trials)


def test_cli_dry_run_and_errors(tmp_path, capsys):
    path = write_grid(tmp_path / "grid.yaml", tiny_grid(tmp_path))
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for t in plan_sweep(path).trials:
        assert t.id in out and "pending" in out
    assert not (tmp_path / "sweep").exists()
    bad = write_grid(tmp_path / "bad.yaml", tiny_grid(tmp_path, axes={"seeds": [0]}))
    assert main(["sweep", str(bad), "--dry-run"]) == 2
    assert "seeds" in capsys.readouterr().err
    assert main(["sweep", str(path), "--backend", "nope"]) == 2
    assert main(["sweep", "--help"]) == 0


# ---------------------------------------------------------------------------- Ray plumbing
class _Ref:
    def __init__(self, spec: dict) -> None:
        self.spec = spec


class _FakeRay:
    """Enough of ``ray`` to check init arguments, the concurrency cap and error unwrapping."""

    def __init__(self) -> None:
        self.initialized = False
        self.init_kwargs: dict | None = None
        self.running: list = []
        self.peak = 0

    def is_initialized(self):
        return self.initialized

    def init(self, **kw):
        self.initialized, self.init_kwargs = True, kw

    def shutdown(self):
        self.initialized = False

    def remote(self, **opts):
        fake = self

        class Task:
            def options(self, **kw):
                return self

            def remote(self, spec):
                ref = _Ref(spec)
                fake.running.append(ref)
                fake.peak = max(fake.peak, len(fake.running))
                return ref

        return lambda fn: Task()

    def wait(self, refs, num_returns=1):
        return refs[:1], refs[1:]

    def get(self, ref):
        self.running.remove(ref)
        if ref.spec["id"] == "bad":
            raise RuntimeError("trial failed")
        return {"trial": ref.spec["id"], "status": "done", "records": []}


def test_ray_runner_caps_concurrency_and_owns_its_instance(monkeypatch):
    from robens import sweep as sweep_mod
    from robens.sweep import TrialResources

    fake = _FakeRay()
    monkeypatch.setattr(sweep_mod, "_import_ray", lambda: fake)
    specs = [{"id": str(i)} for i in range(5)] + [{"id": "bad"}]
    out = list(_iter_ray(specs, TrialResources(), None, 2, 2, None))
    assert fake.peak == 2 and not fake.initialized
    assert fake.init_kwargs["num_cpus"] == 2 and "address" not in fake.init_kwargs
    assert fake.init_kwargs["include_dashboard"] is False
    assert [s["id"] for s, _, _ in out] == [s["id"] for s in specs]
    assert isinstance(out[-1][2], RuntimeError) and out[0][1]["status"] == "done"
    list(_iter_ray(specs[:2], TrialResources(), "ray://head:10001", None, 2, None))
    assert fake.init_kwargs["address"] == "ray://head:10001"
    assert "num_cpus" not in fake.init_kwargs  # a cluster has its own


def test_tiny_sweep_on_local_ray_then_resume_skips_both(tmp_path, capfd):
    ray = pytest.importorskip("ray")
    grid = tiny_grid(tmp_path)
    try:
        res = run_sweep(grid, backend="ray", num_cpus=2, max_concurrent=2, progress=False,
                        echo=None)
        assert not ray.is_initialized()
    finally:
        if ray.is_initialized():
            ray.shutdown()
    err = capfd.readouterr().err
    assert "WARNING" not in err, err  # Ray's start-up warnings stay off the terminal
    plan = res.plan
    ids = [t.id for t in plan.trials]
    assert sorted(res.ran) == sorted(ids) and res.skipped == [] and res.failed == {}
    records = [json.loads(x) for x in (tmp_path / "sweep" / "records.jsonl").read_text()
               .splitlines()]
    assert records == list(res)
    assert len(records) == 4  # per trial: ensemble + one member
    assert {r["trial"] for r in records} == set(ids)
    clean = [r for r in records if r["metric"] == "clean_accuracy"]
    assert sorted(r["overrides"]["seed"] for r in clean) == [0, 1]
    assert all(r["seed"] == r["overrides"]["seed"] and r["sweep"] == "tiny" for r in clean)
    with open(tmp_path / "sweep" / "records.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 4
    done = {t.id: t.run_dir / "DONE.json" for t in plan.trials}
    stamps = {k: (p.stat().st_mtime_ns, p.read_bytes()) for k, p in done.items()}

    again = run_sweep(grid, backend="ray", num_cpus=2, progress=False, echo=None)
    assert sorted(again.skipped) == sorted(ids) and again.ran == []
    assert list(again) == records
    assert {k: (p.stat().st_mtime_ns, p.read_bytes()) for k, p in done.items()} == stamps
    assert not ray.is_initialized()  # nothing to run: Ray was not even started


# ---------------------------------------------------------------------------- serial
def test_suite_evaluation_and_failed_trials(tmp_path, monkeypatch):
    calls = []

    def fake_run_suite(checkpoint, suite, out, progress=False, echo=None):
        calls.append(suite)
        rec = {"metric": "robust_accuracy", "attack": "fake", "value": 0.5,  # a valid record
               "method": "fake", "dataset": "synthetic", "model": "1xlenet"}
        atomic_write_text(Path(out) / "results.jsonl", json.dumps(rec) + "\n")
        return {"records": [rec]}

    import robens.evaluate  # noqa: F401 - loaded before its suite module is hidden

    suite = tmp_path / "suite.yaml"
    suite.write_text("attacks: [fgsm]\n")
    grid = tiny_grid(tmp_path, suite=str(suite), axes={"seed": [0]})
    # no suite module: clean evaluation only, with a warning
    monkeypatch.setitem(sys.modules, "robens.evaluate.suite", None)
    lines: list[str] = []
    res = run_sweep(grid, backend="serial", progress=False, echo=lines.append)
    assert any("clean evaluation only" in x for x in lines)
    assert {r["metric"] for r in res} == {"clean_accuracy", "member_clean_accuracy"}
    ckpt = res.plan.trials[0].run_dir / "checkpoint.safetensors"
    trained_at = ckpt.stat().st_mtime_ns
    # the suite appears: the trial is evaluated again, not retrained
    monkeypatch.setitem(sys.modules, "robens.evaluate.suite",
                        types.SimpleNamespace(run_suite=fake_run_suite))
    res = run_sweep(grid, backend="serial", progress=False, echo=None)
    assert len(res.ran) == 1 and calls == [str(suite)]
    assert [r["attack"] for r in res if r["metric"] == "robust_accuracy"] == ["fake"]
    assert all(r["trial"] == res.plan.trials[0].id for r in res)
    res = run_sweep(grid, backend="serial", progress=False, echo=None)
    assert len(res.skipped) == 1 and len(calls) == 1
    suite.write_text("attacks: [pgd]\n")  # an edited suite: evaluate again
    res = run_sweep(grid, backend="serial", progress=False, echo=None)
    assert len(res.ran) == 1 and len(calls) == 2
    assert ckpt.stat().st_mtime_ns == trained_at

    # a failing trial does not stop the others, and the error names it
    root = tmp_path / "no-data"
    root.mkdir()
    bad = tiny_grid(tmp_path, axes={"data.dataset": ["synthetic", "mnist"]},
                    output_dir=str(tmp_path / "fail"))
    bad["base"] = {**TINY_BASE, "data": {**TINY_BASE["data"], "root": str(root)}}
    monkeypatch.setitem(sys.modules, "robens.evaluate.suite", None)
    with pytest.raises(SweepError, match="1 of 2 trial") as info:
        run_sweep(bad, backend="serial", progress=False, echo=None)
    result = info.value.result
    assert len(result.ran) == 1 and len(result.failed) == 1
    failed_id = next(iter(result.failed))
    assert failed_id in str(info.value) and "data.dataset=mnist" in str(info.value)
    assert {r["dataset"] for r in result} == {"synthetic"}
    assert (tmp_path / "fail" / "records.jsonl").exists()


def test_a_trial_refuses_to_mix_two_versions_of_the_code(tmp_path, monkeypatch):
    import robens.source as source
    import robens.sweep as sweep

    real = source.source_fingerprint()
    assert real == source.source_fingerprint() and len(real) == 64
    grid = tiny_grid(tmp_path, axes={"seed": [0]})
    # planned with other code than the worker has: refused before training
    monkeypatch.setattr(sweep, "source_fingerprint", lambda: "0" * 64)
    with pytest.raises(SweepError, match="source changed before the trial started") as info:
        run_sweep(grid, backend="serial", progress=False, echo=None)
    assert "ROBENS_ALLOW_SOURCE_MISMATCH" in str(info.value)
    run_dir = info.value.result.plan.trials[0].run_dir
    assert not (run_dir / "checkpoint.safetensors").exists()
    # the code changes while the trial runs: trained, but no results written
    monkeypatch.setattr(sweep, "source_fingerprint", lambda: real)
    answers = iter([real, "1" * 64])
    monkeypatch.setattr(source, "source_fingerprint", lambda: next(answers))
    with pytest.raises(SweepError, match="source changed while the trial ran"):
        run_sweep(grid, backend="serial", progress=False, echo=None)
    assert (run_dir / "checkpoint.safetensors").exists()
    assert not (run_dir / "DONE.json").exists()
    # the same command again, one version of the code: resumes and finishes
    monkeypatch.setattr(source, "source_fingerprint", lambda: real)
    res = run_sweep(grid, backend="serial", progress=False, echo=None)
    assert len(res.ran) == 1 and (run_dir / "DONE.json").exists()
    # the escape hatch
    monkeypatch.setenv("ROBENS_ALLOW_SOURCE_MISMATCH", "1")
    source.check_source("2" * 64, "now")


# ---------------------------------------------------------------------------- crash safety
def _check_files_whole(root: Path) -> None:
    """Every result file under ``root`` parses completely (temp and lock files aside)."""
    for path in root.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl":
            for line in path.read_text().splitlines():
                json.loads(line)
        elif path.suffix == ".csv":
            with open(path, newline="") as fh:
                rows = list(csv.reader(fh))
            assert rows and all(len(r) == len(rows[0]) for r in rows), path
        elif path.suffix == ".yaml":
            yaml.safe_load(path.read_text())
        elif path.name.startswith("optimizer") and path.suffix == ".safetensors":
            read_resume_state(path)  # a checkpoint's optimizer state (or the next one)
        elif path.suffix == ".safetensors":
            load_checkpoint(path)


def test_sigkill_at_random_points_then_resume(tmp_path):
    grid = tiny_grid(tmp_path, axes={"seed": [0, 1, 2]})
    grid["base"] = {**TINY_BASE, "training": {"epochs": 2, "threads": 1}}
    path = write_grid(tmp_path / "grid.yaml", grid)
    cmd = [sys.executable, "-m", "robens.cli", "sweep", str(path), "--backend", "serial",
           "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    out = tmp_path / "sweep"
    plan = plan_sweep(path)
    rng = random.Random(20240607)
    done_stamps: dict[str, tuple[int, bytes, int]] = {}
    partial: dict[str, list] = {}

    def snapshot() -> None:
        for t in plan.trials:
            done = t.run_dir / "DONE.json"
            if done.exists() and t.id not in done_stamps:
                ckpt = t.run_dir / "checkpoint.safetensors"
                done_stamps[t.id] = (done.stat().st_mtime_ns, done.read_bytes(),
                                     ckpt.stat().st_mtime_ns)
            hist = t.run_dir / "history.json"
            if not done.exists() and hist.exists():
                partial[t.id] = json.loads(hist.read_text())

    def progress() -> int:  # finished epochs + finished trials
        n = 0
        for t in plan.trials:
            hist = t.run_dir / "history.json"
            n += len(json.loads(hist.read_text())) if hist.exists() else 0
            n += (t.run_dir / "DONE.json").exists()
        return n

    kills = 0
    for _ in range(3):  # each round: wait for 1-2 new epochs/trials, then kill at random
        start, steps = progress(), rng.choice([1, 2])
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while progress() < start + steps and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        if out.exists():
            _check_files_whole(out)
        snapshot()
    assert kills >= 1

    final = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    _check_files_whole(out)
    for t in plan.trials:  # completed trials were neither retrained nor re-evaluated
        if t.id in done_stamps:
            done = t.run_dir / "DONE.json"
            ckpt = t.run_dir / "checkpoint.safetensors"
            assert (done.stat().st_mtime_ns, done.read_bytes(),
                    ckpt.stat().st_mtime_ns) == done_stamps[t.id]
    for tid, hist in partial.items():  # interrupted trials resumed, kept finished epochs
        now = json.loads((out / "trials" / tid / "history.json").read_text())
        assert now[: len(hist)] == hist
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 2 * len(plan.trials)
    assert sorted({r["trial"] for r in records}) == sorted(t.id for t in plan.trials)
    for t in plan.trials:
        assert json.loads((t.run_dir / "DONE.json").read_text())["records"] == [
            r for r in records if r["trial"] == t.id
        ]
