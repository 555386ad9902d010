"""Issue #16 (part A): every hostile or careless input ends in one ``error:`` line and exit 2
(naming the culprit) or in documented behaviour; no raw traceback, no silent fallback."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import torch
from test_data import write_mnist_like as write_idx_dataset
from torch import nn

from robens.cli import main
from robens.errors import CheckpointError, ConfigError, DatasetError, InputError

pytestmark = pytest.mark.usefixtures("one_thread_module")

TINY = ["--dataset", "synthetic", "--train-size", "64", "--test-size", "32", "--members", "2",
        "--epochs", "1", "--batch-size", "32", "--no-progress", "--threads", "1"]


def cli(capsys, *argv) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return rc, err


def assert_error(rc: int, err: str, *needles: str) -> None:
    """Exit 2 and exactly one ``error:`` line naming every needle; no traceback."""
    assert rc == 2, err
    assert "Traceback" not in err
    assert err.startswith("error: "), err
    assert sum(line.startswith("error:") for line in err.splitlines()) == 1, err
    for n in needles:
        assert n in err, (n, err)


def write_mnist_like(folder: Path) -> Path:
    """Uncompressed IDX files of a tiny MNIST-like dataset (20 train / 10 test)."""
    return write_idx_dataset(folder, 20, 10, gz=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny trained synthetic run (a few seconds)."""
    out = tmp_path_factory.mktemp("inputs") / "run"
    assert main(["train", *TINY, "-o", str(out)]) == 0
    return out


@pytest.fixture
def a_file(tmp_path) -> Path:
    f = tmp_path / "plain-file"
    f.write_text("not a folder")
    return f


# ----------------------------------------------------------------------------- devices, seeds
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda(capsys, tmp_path):
    assert_error(*cli(capsys, "train", *TINY, "-o", tmp_path / "r", "--device", "cuda"),
                 "'cuda'", "CUDA is not available")


def test_device_unknown(capsys, tmp_path, run_dir):
    assert_error(*cli(capsys, "train", *TINY, "-o", tmp_path / "r", "--device", "tpu"),
                 "training.device", "'tpu'")
    assert_error(*cli(capsys, "evaluate", run_dir, "--device", "tpu"), "'tpu'")


def test_device_out_of_range():
    from robens.validation import check_device

    with pytest.raises(InputError, match="cuda:99"):
        check_device("cuda:99")
    with pytest.raises(InputError, match="'meta' is not supported"):  # found by the fuzzer
        check_device("meta")
    assert check_device("cpu").type == "cpu"


@pytest.mark.parametrize("seed", [2**63, 2**64 + 5, -1])
def test_seed_out_of_range(capsys, tmp_path, run_dir, seed):
    assert_error(*cli(capsys, "train", *TINY, "-o", tmp_path / "r", "--seed", seed), "seed")
    assert_error(*cli(capsys, "evaluate", run_dir, "--seed", seed), "--seed")


def test_largest_seed_is_accepted():
    from robens.data import load_dataset

    assert len(load_dataset("synthetic", "test", size=8, seed=2**63 - 1)) == 8
    with pytest.raises(DatasetError, match="seed"):
        load_dataset("synthetic", "test", size=8, seed=2**63)


# ----------------------------------------------------------------------------- output paths
def test_output_dir_under_a_file(capsys, a_file):
    assert_error(*cli(capsys, "train", *TINY, "-o", a_file / "x"), "output_dir", str(a_file))


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_attack_save_into_proc(capsys, run_dir):
    assert_error(*cli(capsys, "attack", run_dir, "--save", "/proc/adv.npz", "--steps", "1"),
                 "--save", "/proc")


def test_attack_save_on_a_folder(capsys, run_dir, tmp_path):
    assert_error(*cli(capsys, "attack", run_dir, "--save", tmp_path, "--steps", "1"),
                 "--save", "is a folder")


def test_attack_out_is_a_file(capsys, run_dir, a_file):
    assert_error(*cli(capsys, "attack", run_dir, "-o", a_file, "--steps", "1"),
                 "--out", str(a_file), "not a folder")


def test_report_out_is_a_file(capsys, run_dir, a_file):
    assert_error(*cli(capsys, "report", run_dir, "-o", a_file), "--out", str(a_file))


def test_file_system_refusals_are_one_line(capsys, monkeypatch, tmp_path):
    """An OSError the checks could not foresee (disk full, say) still names its path."""
    from robens.training import trainer as tr

    def full_disk(self, resume=False):
        raise OSError(28, "No space left on device", str(tmp_path / "r" / "ckpt"))

    monkeypatch.setattr(tr.Trainer, "fit", full_disk)
    assert_error(*cli(capsys, "train", *TINY, "-o", tmp_path / "r"), "No space left",
                 str(tmp_path / "r" / "ckpt"))


# ----------------------------------------------------------------------------- report
def test_report_record_without_eps(capsys, tmp_path):
    f = tmp_path / "results.jsonl"
    f.write_text(json.dumps({"metric": "robust_accuracy", "value": 0.5, "attack": "pgd"}) + "\n")
    assert_error(*cli(capsys, "report", f, "-o", tmp_path / "rep"), "results.jsonl:1", "'eps'")


def test_report_skips_bad_lines_and_says_which(capsys, tmp_path, run_dir):
    d = tmp_path / "mixed"
    assert cli(capsys, "evaluate", run_dir, "-o", d)[0] == 0
    good = (d / "records.jsonl").read_text()
    bad = json.dumps({"metric": "robust_accuracy", "value": 0.5, "attack": "pgd"})
    (d / "records.jsonl").write_text(good + "not json\n" + bad + "\n")
    rc, err = cli(capsys, "report", d, "-o", tmp_path / "rep")
    assert rc == 0, err
    n = len(good.splitlines())
    assert f"records.jsonl:{n + 1}: not JSON" in err and f"records.jsonl:{n + 2}:" in err
    assert (tmp_path / "rep" / "index.html").is_file()


def test_report_on_garbage_file_and_folder(capsys, tmp_path):
    f = tmp_path / "junk.jsonl"
    f.write_bytes(b"\x00\xff garbage\n[1, 2]\n{\"no\": \"metric\"}\n")
    assert_error(*cli(capsys, "report", f, "-o", tmp_path / "rep"), "no valid record",
                 "junk.jsonl")
    d = tmp_path / "runs" / "a"
    d.mkdir(parents=True)
    lines = ['{"metric": 3}', "null", '{"metric": "x", "value": "y"}']
    (d / "records.jsonl").write_text("\n".join(lines) + "\n")
    assert_error(*cli(capsys, "report", tmp_path / "runs", "-o", tmp_path / "rep2"),
                 "no valid record", "records.jsonl:1", "records.jsonl:3")
    assert not (tmp_path / "rep2").exists()


# ----------------------------------------------------------------------------- sweep / Ray
def tiny_grid(tmp_path: Path) -> Path:
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "name: g\nbase:\n  data: {dataset: synthetic, train_size: 64, test_size: 32}\n"
        "  model: {members: 2}\n  training: {epochs: 1}\naxes:\n  seed: [0]\n"
        f"output_dir: {tmp_path / 'sweep'}\n"
    )
    return grid


def test_sweep_negative_num_cpus(capsys, tmp_path):
    pytest.importorskip("ray")
    t = time.monotonic()
    assert_error(*cli(capsys, "sweep", tiny_grid(tmp_path), "--num-cpus", "-1"), "num_cpus", "-1")
    assert time.monotonic() - t < 10


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sweep_unreachable_address_fails_fast(capsys, tmp_path):
    pytest.importorskip("ray")
    address = f"127.0.0.1:{_closed_port()}"
    t = time.monotonic()
    assert_error(*cli(capsys, "sweep", tiny_grid(tmp_path), "--address", address),
                 "cannot reach the Ray cluster", address)
    assert time.monotonic() - t < 10


def test_ray_probe_times_out_and_parses_addresses():
    from robens.raysession import check_ray_target

    pytest.importorskip("ray")
    t = time.monotonic()
    # unroutable: a TCP timeout; behind a transparent proxy: connected, but no Ray head answers
    with pytest.raises(ConfigError, match="10.255.255.1"):
        check_ray_target("10.255.255.1:6379", timeout=0.5)
    assert time.monotonic() - t < 10
    with pytest.raises(ConfigError, match="not a number"):
        check_ray_target("head:port")
    check_ray_target(None)
    check_ray_target("auto")


# ----------------------------------------------------------------------------- the API
class TupleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor):
        return self.fc(x.flatten(1)), x


@pytest.mark.parametrize("vectorize", [False, True])
def test_member_returning_a_tuple(vectorize):
    from robens.ensemble import Ensemble

    ens = Ensemble([TupleNet(), TupleNet()], vectorize=vectorize, validate=False)
    with pytest.raises(InputError, match="returned a tuple.*logits"):
        ens(torch.rand(2, 1, 2, 2))


def test_vectorized_dropout_in_training_mode_draws_one_mask_per_member():
    from robens.ensemble import Ensemble

    torch.manual_seed(0)
    base = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.Dropout(0.5), nn.Linear(32, 3))
    twin = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.Dropout(0.5), nn.Linear(32, 3))
    twin.load_state_dict(base.state_dict())
    ens = Ensemble([base, twin], vectorize=True, validate=False)
    x = torch.rand(8, 1, 4, 4)
    ens.train()
    out = ens.member_logits(x)
    assert out.shape == (2, 8, 3)
    assert not torch.equal(out[0], out[1])  # identical weights, independent masks
    ens.eval()
    ref = Ensemble([base, twin], vectorize=False, validate=False).eval().member_logits(x)
    torch.testing.assert_close(ens.member_logits(x), ref)


def test_uap_fit_takes_one_xy_pair():
    from robens.attacks.uap import SGDUAP

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = torch.rand(12, 1, 4, 4), torch.randint(0, 3, (12,))
    kw = dict(eps=0.1, iterations=2, batch_size=6, seed=0)
    pair = SGDUAP(model, **kw).fit((x, y))
    listed = SGDUAP(model, **kw).fit([(x, y)])
    torch.testing.assert_close(pair, listed)
    with pytest.raises(InputError, match="data must be"):
        SGDUAP(model, **kw).fit(x)


def test_weight_tied_modules_save_and_load(tmp_path):
    from robens.checkpoint import load_checkpoint, module_from_tensors, module_to_tensors
    from robens.checkpoint import save_checkpoint as save

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.Linear(5, 5, bias=False)
            self.dec = nn.Linear(5, 5, bias=False)
            self.dec.weight = self.enc.weight

    model = Tied()
    path = save(tmp_path / "tied.safetensors", module_to_tensors(model), {"k": 1})
    tensors, meta = load_checkpoint(path)
    fresh = Tied()
    module_from_tensors(fresh, tensors)
    torch.testing.assert_close(fresh.enc.weight, model.enc.weight)
    assert fresh.dec.weight is fresh.enc.weight  # still tied
    with pytest.raises(CheckpointError, match="not a tensor"):
        save(tmp_path / "bad.safetensors", {"a": 3}, {})


def test_register_model_without_robens_keywords():
    from robens.models.registry import MODELS, register_model

    class Plain(nn.Module):
        def __init__(self, width: int = 3) -> None:
            super().__init__()

    with pytest.raises(ConfigError, match="Plain.*lacks in_shape, num_classes"):
        register_model("plain-test-model")(Plain)
    assert "plaintestmodel" not in MODELS.aliases()

    class Flexible(nn.Module):
        def __init__(self, **kw) -> None:
            super().__init__()

    register_model("flexible-test-model")(Flexible)  # **kwargs takes every keyword


# ----------------------------------------------------------------------------- no fallback
@pytest.fixture
def fake_system(monkeypatch, tmp_path) -> Path:
    """A Fashion-MNIST copy in a 'system' folder, as on a machine with the Debian package."""
    from robens.data import datasets as ds

    system = write_mnist_like(tmp_path / "system" / "fashion-mnist")
    monkeypatch.setattr(ds, "SYSTEM_DIRS", {"fashion-mnist": (system,)})
    monkeypatch.delenv("ROBENS_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return system


def test_explicit_data_root_never_falls_back(capsys, fake_system, tmp_path, monkeypatch):
    from robens.data import load_dataset

    assert len(load_dataset("fashion-mnist", "test")) == 10  # the system copy, by default
    missing = tmp_path / "nonexistent"
    with pytest.raises(DatasetError, match="only it was searched") as info:
        load_dataset("fashion-mnist", "test", root=missing)
    assert str(missing) in str(info.value) and str(fake_system) not in str(info.value)
    assert_error(*cli(capsys, "train", "--dataset", "fashion-mnist", "--data-root", missing,
                      "-o", tmp_path / "r"), str(missing), "train split")
    monkeypatch.setenv("ROBENS_DATA", str(missing))
    with pytest.raises(DatasetError, match="ROBENS_DATA is set"):
        load_dataset("fashion-mnist", "test")


def test_subset_larger_than_split(fake_system):
    from robens.data import load_dataset

    assert len(load_dataset("fashion-mnist", "train", size=20)) == 20  # the whole split
    with pytest.raises(DatasetError, match="20 train images.*10000000"):
        load_dataset("fashion-mnist", "train", size=10_000_000)


def test_train_size_larger_than_split_on_the_cli(capsys, fake_system, tmp_path):
    assert_error(*cli(capsys, "train", "--dataset", "fashion-mnist", "--train-size", "10000000",
                      "-o", tmp_path / "r"), "10000000", "20 train images")


def test_empty_config(capsys, tmp_path):
    from robens.config import load_config

    for text in ("", "# only a comment\n", "{}\n"):
        empty = tmp_path / "empty.yaml"
        empty.write_text(text)
        assert_error(*cli(capsys, "train", empty), "is empty", "configs/main.yaml")
        with pytest.raises(ConfigError, match="configs/main.yaml"):
            load_config(empty)


def test_evaluate_on_another_dataset_needs_force(capsys, run_dir, tmp_path):
    root = write_mnist_like(tmp_path / "fm")
    assert_error(*cli(capsys, "evaluate", run_dir, "--dataset", "fashion-mnist",
                      "--data-root", root, "-o", tmp_path / "e"), "trained on synthetic",
                 "--force")
    suite = tmp_path / "suite.yaml"
    suite.write_text("attacks: []\n")
    assert_error(*cli(capsys, "evaluate", run_dir, "--suite", suite, "--dataset", "fmnist",
                      "--data-root", root), "--force")
    rc, err = cli(capsys, "evaluate", run_dir, "--dataset", "fashion-mnist", "--data-root", root,
                  "-o", tmp_path / "e", "--force")
    assert rc == 0, err
    # the trained dataset named explicitly (or by an alias) needs nothing
    assert cli(capsys, "evaluate", run_dir, "--dataset", "synth", "-o", tmp_path / "e2")[0] == 0


@pytest.mark.parametrize("objective, needle", [
    ("ce + 1e400*gal", "got inf"), ("ce + -0.5*gal", "got -0.5"), ("ce + 1e+999*jr", "got inf"),
])
def test_objective_weights_must_be_finite_and_non_negative(objective, needle):
    from robens.objectives import parse_objective

    with pytest.raises(ConfigError, match=needle):
        parse_objective(objective)


def test_non_finite_stop_names_the_terms(capsys, tmp_path):
    """Each term finite, their weighted sum overflows float32: the stop says so, naming them."""
    rc, err = cli(capsys, "train", *TINY, "-o", tmp_path / "r", "--objective", "ce + 3e38*ce")
    assert_error(rc, err, "overflowed", "ce=")
    assert "term(s): )" not in err


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_lr_not_finite(capsys, tmp_path, value):
    assert_error(*cli(capsys, "train", *TINY, "-o", tmp_path / "r", "--set",
                      f"optimizer.lr={value}"), "optimizer.lr", "finite number")


# ----------------------------------------------------------------------------- found by fuzzing
def test_nul_in_paths_of_a_config(capsys, tmp_path):
    for key in ("output_dir", "data.root"):
        cfg = tmp_path / "nul.yaml"
        section, _, leaf = key.rpartition(".")
        body = f'{leaf}: "a\\0b"' if not section else f'{section}: {{{leaf}: "a\\0b"}}'
        cfg.write_text(f"name: x\n{body}\n")
        assert_error(*cli(capsys, "train", cfg), key, "NUL")


def test_reproduce_set_may_not_replace_a_section(capsys):
    assert_error(*cli(capsys, "reproduce", "rce-detection", "--dry-run", "--set", "data=1"),
                 "--set data=1", "section")


def test_usage_errors_are_one_error_line(capsys):
    assert_error(*cli(capsys, "train", "--bogus"), "No such option", "robens train -h")
    assert_error(*cli(capsys, "train", "--epochs", "abc"), "--epochs")
    assert_error(*cli(capsys, "nosuchcommand"), "nosuchcommand")


def test_huge_sizes_are_refused_not_allocated(capsys, tmp_path):
    from robens.data import load_dataset

    with pytest.raises(DatasetError, match="maximum of 1000000"):
        load_dataset("synthetic", "train", size=2**31)
    assert_error(*cli(capsys, "train", *TINY, "-o", tmp_path / "r", "--members", "10000000"),
                 "model.members")
    assert_error(*cli(capsys, "train", *TINY, "-o", tmp_path / "r", "--threads", str(2**31)),
                 "training.threads")
