"""Ray is an optional extra (``robens[sweep]``): without it robens imports and every command
but a Ray sweep works, and a Ray sweep or recipe says how to install it; with it, the local
Ray robens starts keeps its start-up warnings off the user's terminal."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from robens.cli import main
from robens.raysession import init_kwargs

REPO = Path(__file__).resolve().parents[1]
TINY_BASE = {
    "data": {"dataset": "synthetic", "train_size": 100, "test_size": 40, "batch_size": 50},
    "model": {"arch": "lenet", "members": 1},
    "training": {"epochs": 1, "threads": 1},
}


def _grid(tmp_path: Path) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny", "base": TINY_BASE, "axes": {"seed": [0]},
                                    "output_dir": str(tmp_path / "sweep")}))
    return path


def _error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_without_ray_sweep_and_reproduce_say_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # ``import ray`` raises ImportError
    grid = _grid(tmp_path)
    assert main(["sweep", str(grid), "--no-progress"]) == 2
    line = _error_line(capsys.readouterr().err)
    assert 'pip install "robens[sweep]"' in line and "--backend serial" in line
    assert not (tmp_path / "sweep").exists()  # refused before anything was written

    out = tmp_path / "rep"
    assert main(["reproduce", "diversity-training", "--scale", "quick", "--dataset",
                 "synthetic", "-o", str(out), "--no-progress"]) == 2
    line = _error_line(capsys.readouterr().err)
    assert 'pip install "robens[sweep]"' in line and "--backend serial" in line
    assert not out.exists()

    # what needs no Ray works without it: plans, dry runs, other commands
    assert main(["sweep", str(grid), "--dry-run"]) == 0
    assert main(["reproduce", "diversity-training", "--dataset", "synthetic", "--dry-run",
                 "-o", str(out)]) == 0
    assert main(["data", "info", "synthetic"]) == 0
    assert "error" not in capsys.readouterr().err


def test_robens_imports_without_ray():
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "import robens, robens.cli, robens.sweep, robens.reproduce, robens.api,"
        " robens.pipeline, robens.evaluate, robens.recipes.running\n"
        "from robens.cli import main\n"
        "assert main(['--version']) == 0\n"
        "assert [m for m in sys.modules if m.startswith('ray')] == ['ray']\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("robens ")


def test_ray_logs_errors_only_for_the_local_instance_robens_starts():
    assert init_kwargs()["logging_level"] == logging.ERROR
    assert init_kwargs(num_cpus=2)["logging_level"] == logging.ERROR
    assert init_kwargs("local")["logging_level"] == logging.ERROR
    # a cluster the user chose: its warnings are the user's business
    assert init_kwargs("ray://head:10001")["logging_level"] == logging.WARNING
    assert init_kwargs("auto")["logging_level"] == logging.WARNING
    assert init_kwargs(extra={"logging_level": logging.INFO})["logging_level"] == logging.INFO
    assert init_kwargs()["log_to_driver"] is False


@pytest.mark.slow  # a Ray start: about 4 s on an idle machine, over 10 s on a busy one
def test_a_local_ray_session_prints_no_warnings(tmp_path):
    pytest.importorskip("ray")
    code = (
        "from robens.raysession import ray_session\n"
        "def answer():\n"
        "    return 42\n"
        "with ray_session(num_cpus=1) as ray:\n"
        "    print(ray.get(ray.remote(num_cpus=1)(answer).remote()))\n"
    )
    # as a user's shell has it: RAY_AUTH_MODE unset, so Ray warns about token authentication
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "42"
    assert "WARNING" not in proc.stderr and "Token authentication" not in proc.stderr, proc.stderr
