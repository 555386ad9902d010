"""Long CLI work shows progress: bars on a terminal (driven under a pseudo-terminal), one line
per stage otherwise; warnings come before the work; ``--attack uap`` fits as the suite does."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from robens.config import validate_config
from robens.evaluate.attack import UAP_FIT_SIZE, UAP_PARAMS
from robens.records import read_json_records
from robens.training import Trainer
from tests.conftest import small_config

ROOT = Path(__file__).resolve().parents[1]
ROBENS = [sys.executable, "-m", "robens.cli"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("progress")
    cfg = validate_config(small_config(tmp, **{"model.members": 1, "data.train_size": 200,
                                               "data.test_size": 40}))
    return Trainer(cfg, progress=False, echo=None).fit().checkpoint


def run_in_pty(args: list[str], timeout: float = 600) -> tuple[int, str]:
    """Run ``args`` with stdin/stdout/stderr on a pseudo-terminal; returns (status, output)."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "PYTHONPATH": str(ROOT)}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT,
                            close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    if proc.poll() is None:
        proc.kill()
    rc = proc.wait(timeout=30)
    return rc, b"".join(chunks).decode("utf-8", "replace")


def test_uap_shows_a_bar_on_a_terminal_and_fits_like_the_suite(checkpoint, tmp_path):
    out = tmp_path / "uap.json"
    rc, text = run_in_pty([*ROBENS, "attack", str(checkpoint), "--attack", "uap", "--eps",
                           "8/255", "--steps", "2", "--test-size", "40", "--out", str(out)])
    assert rc == 0, text
    assert "fitting SGD-UAP eps=0.0313725 on 2000 train images" in text
    assert "━" in text  # rich's bar, drawn because stderr is a terminal
    rec = next(r for r in read_json_records(out) if r["metric"] == "robust_accuracy")
    assert rec["eps"] == pytest.approx(8 / 255)
    assert rec["param_iterations"] == 2  # --steps; the rest as the suite's
    assert rec["param_seeds"] == UAP_PARAMS["seeds"]
    assert rec["param_batch_size"] == UAP_PARAMS["batch_size"]


def test_cw_bar_on_a_terminal_and_its_warning_comes_first(checkpoint, tmp_path):
    rc, text = run_in_pty([*ROBENS, "attack", str(checkpoint), "--attack", "cw", "--steps",
                           "20", "--test-size", "20", "--out", str(tmp_path)])
    assert rc == 0, text
    assert "cw binary search" in text and "━" in text
    warning = text.index("minimum-norm attack")
    assert warning < text.index("cw binary search")  # the parameter warning before the work


def test_stage_lines_without_a_terminal(checkpoint, tmp_path):
    proc = subprocess.run([*ROBENS, "attack", str(checkpoint), "--attack", "uap", "--eps",
                           "8/255", "--steps", "2", "--test-size", "40", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert "fitting SGD-UAP eps=0.0313725 on 2000 train images (6 steps)" in proc.stderr
    assert "uap eps=0.0313725 (1 steps)" in proc.stderr  # the evaluation stage, one batch
    assert "━" not in proc.stderr + proc.stdout


def test_cli_uap_defaults_are_the_main_suites():
    suite = yaml.safe_load((ROOT / "configs/suites/main.yaml").read_text())
    entry = next(a for a in suite["attacks"] if a["attack"] == "uap")
    assert entry["fit_size"] == UAP_FIT_SIZE
    assert entry["params"] == UAP_PARAMS
