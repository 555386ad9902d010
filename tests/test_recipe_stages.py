"""The recipe runner starts each stage as soon as the stages it reads have finished."""

from __future__ import annotations

import contextlib
import threading
import time
from types import SimpleNamespace

import pytest

from robens.recipes import running


def stage(name: str, *needs: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, needs=list(needs), sweep=name, trials=[])


@pytest.fixture
def fake_sweeps(monkeypatch):
    """``run_sweep`` replaced by a sleep per stage; records start and end times."""
    log: dict[str, list[float]] = {}
    lock = threading.Lock()
    delays = {"a": 0.05, "b": 0.05, "c": 0.6, "d": 0.05}
    fail: set[str] = set()

    def run_sweep(sweep, **_kw):
        with lock:
            log[sweep] = [time.perf_counter()]
        time.sleep(delays[sweep])
        with lock:
            log[sweep].append(time.perf_counter())
        if sweep in fail:
            raise RuntimeError(f"trial of {sweep} failed")

    monkeypatch.setattr(running, "run_sweep", run_sweep)
    monkeypatch.setattr(running, "ray_session", lambda *a: contextlib.nullcontext())
    monkeypatch.setattr(running, "_auto_resources", lambda *a: None)
    return log, fail


def run(stages, backend="ray"):
    order: list[str] = []
    secs = running._run_stages(stages, backend, None, None, None, False, None,
                               lambda s: order.append(s.name))
    return order, secs


def test_a_stage_starts_when_the_stages_it_reads_are_done(fake_sweeps):
    log, _ = fake_sweeps
    # b and c read a; d reads b only, so it must not wait for the slow c
    order, secs = run([stage("a"), stage("b", "a"), stage("c", "a"), stage("d", "b")])
    assert order == ["a", "b", "c", "d"] and set(secs) == {"a", "b", "c", "d"}
    assert log["b"][0] >= log["a"][1] and log["c"][0] >= log["a"][1]
    assert log["d"][0] >= log["b"][1]
    assert log["d"][1] < log["c"][1]  # d ran beside c


def test_serial_backend_runs_in_plan_order(fake_sweeps):
    log, _ = fake_sweeps
    order, _ = run([stage("a"), stage("c", "a"), stage("b", "a"), stage("d", "b")], "serial")
    assert order == ["a", "c", "b", "d"]
    assert log["b"][0] >= log["c"][1] and log["d"][0] >= log["b"][1]


def test_a_failure_starts_nothing_new_and_is_raised_after_the_running_ones(fake_sweeps):
    log, fail = fake_sweeps
    fail.add("b")
    with pytest.raises(RuntimeError, match="trial of b failed"):
        run([stage("a"), stage("b", "a"), stage("c", "a"), stage("d", "b")])
    assert "d" not in log and len(log["c"]) == 2  # c finished, d never started
