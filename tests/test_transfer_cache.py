"""Transfer examples crafted once per surrogate: reused by every target, same numbers."""

from __future__ import annotations

import multiprocessing

import pytest
import torch
from conftest import small_config

from robens.attacks.base import Attack
from robens.config import validate_config
from robens.evaluate import run_suite
from robens.evaluate.transfer_cache import TransferCache, cache_key
from robens.training import Trainer

pytestmark = pytest.mark.usefixtures("one_thread_module")

ATTACKS = [
    {"attack": "fgsm", "eps": [0.1, 0.2], "threat": "transfer", "surrogate": "s"},
    {"attack": "rfgsm", "eps": 0.1, "threat": "transfer", "surrogate": "s"},  # random start
    {"attack": "pgd", "eps": 0.1, "threat": "transfer", "surrogate": "s",
     "params": {"steps": 3}},
]
N_TRANSFER_UNITS = 4


def _train(tmp, name: str, seed: int):
    cfg = validate_config(small_config(
        tmp / name, **{"data.train_size": 200, "data.test_size": 60, "name": name, "seed": seed}
    ))
    Trainer(cfg, progress=False, echo=None).fit()
    return tmp / name / "run"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tcache")
    return {n: _train(tmp, n, s) for n, s in (("surrogate", 5), ("a", 1), ("b", 2))}


def _suite(runs, cache="auto", **over):
    return {"name": "t", "test_size": 50, "batch_size": 20, "transfer_cache": cache,
            "surrogates": {"s": {"checkpoint": str(runs["surrogate"])}},
            "attacks": ATTACKS, **over}


def _values(result):
    return sorted(
        (r["attack"], r["eps"], r["metric"], r["value"], r.get("mean_norm"))
        for r in result["records"]
        if r["threat_model"] == "transfer" and r["metric"] != "member_robust_accuracy"
    )


class _Count:
    """Counts the batches crafted by any Attack (``Attack.run``)."""

    def __init__(self, monkeypatch):
        self.n = 0
        original = Attack.run

        def run(attack, x, y, *a, **k):
            self.n += 1
            return original(attack, x, y, *a, **k)

        monkeypatch.setattr(Attack, "run", run)


def test_second_target_reads_the_examples_and_gets_identical_numbers(runs, tmp_path,
                                                                     monkeypatch):
    count = _Count(monkeypatch)
    cache_dir = runs["surrogate"] / "transfer-cache"
    ref_b = run_suite(runs["b"], _suite(runs, cache=None), out=tmp_path / "ref-b",
                      progress=False, echo=None)
    crafted_without_cache = count.n
    assert crafted_without_cache == N_TRANSFER_UNITS * 3  # 50 images in batches of 20
    assert not cache_dir.exists()

    count.n = 0
    run_suite(runs["a"], _suite(runs), out=tmp_path / "a", progress=False, echo=None)
    assert count.n == crafted_without_cache  # the first target crafts...
    assert len(list(cache_dir.glob("*.safetensors"))) == N_TRANSFER_UNITS

    count.n = 0
    got_b = run_suite(runs["b"], _suite(runs), out=tmp_path / "b", progress=False, echo=None)
    assert count.n == 0  # ...the second reads
    assert _values(got_b) == _values(ref_b)  # bit-for-bit the same records


def test_key_changes_with_what_determines_the_examples(runs, tmp_path):
    out = run_suite(runs["a"], _suite(runs, cache=str(tmp_path / "c")), out=tmp_path / "a",
                    progress=False, echo=None)
    assert out["ran"]
    n1 = len(list((tmp_path / "c").glob("*.safetensors")))
    run_suite(runs["a"], _suite(runs, cache=str(tmp_path / "c"), seed=1), out=tmp_path / "a1",
              progress=False, echo=None)
    run_suite(runs["a"], _suite(runs, cache=str(tmp_path / "c"), test_size=40),
              out=tmp_path / "a2", progress=False, echo=None)
    assert len(list((tmp_path / "c").glob("*.safetensors"))) == 3 * n1
    assert cache_key({"eps": 0.1}) != cache_key({"eps": 0.2})
    assert cache_key({"a": 1, "b": 2}) == cache_key({"b": 2, "a": 1})


def test_corrupt_or_foreign_files_are_misses_and_rewritten(runs, tmp_path, monkeypatch):
    root = tmp_path / "c"
    ref = run_suite(runs["a"], _suite(runs, cache=str(root)), out=tmp_path / "ref",
                    progress=False, echo=None)
    files = sorted(root.glob("*.safetensors"))
    good = files[0].read_bytes()
    files[0].write_bytes(good[:-7])  # truncated
    data = bytearray(files[1].read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last example: digest mismatch
    files[1].write_bytes(bytes(data))
    files[2].write_bytes(b"not a safetensors file")
    for f in files[:3]:
        assert TransferCache(root).load(f.stem, 50) is None
    assert TransferCache(root).load(files[3].stem, 49) is None  # wrong sample count

    count = _Count(monkeypatch)
    again = run_suite(runs["a"], _suite(runs, cache=str(root)), out=tmp_path / "again",
                      progress=False, echo=None)
    assert count.n == 3 * 3  # three bad files crafted again, one read
    assert _values(again) == _values(ref)
    assert files[0].read_bytes() == good  # rewritten, identical bytes
    for f in files:
        assert TransferCache(root).load(f.stem, 50) is not None


def test_unwritable_cache_folder_still_evaluates(runs, tmp_path, monkeypatch):
    import robens.evaluate.transfer_cache as tc

    def refuse(path, data):
        raise PermissionError(f"read-only: {path}")

    monkeypatch.setattr(tc, "atomic_write_bytes", refuse)
    (tmp_path / "a-file").write_text("")  # nor can the key's claim (its lock file) be made
    root = tmp_path / "a-file" / "ro"
    out = run_suite(runs["a"], _suite(runs, cache=str(root)), out=tmp_path / "a",
                    progress=False, echo=None)
    assert len(_values(out)) == 2 * N_TRANSFER_UNITS
    assert not root.exists()


def test_cache_round_trip_is_exact(tmp_path):
    x = torch.rand(7, 1, 28, 28)
    norm = torch.rand(7, dtype=torch.float64)
    cache = TransferCache(tmp_path)
    assert cache.save("k", x, norm, {"eps": 0.1})
    got = cache.load("k", 7)
    assert got is not None
    assert torch.equal(got["x_adv"], x) and torch.equal(got["norm"], norm)
    assert cache.load("other", 7) is None


def _suite_in_process(target, suite, out, barrier, results) -> None:
    """A child process: run the suite once the other child is ready too; report how many
    batches it crafted and its transfer values."""
    torch.set_num_threads(1)
    count = [0]
    original = Attack.run

    def run(attack, x, y, *a, **k):
        count[0] += 1
        return original(attack, x, y, *a, **k)

    Attack.run = run
    barrier.wait(60)
    got = run_suite(target, suite, out=out, progress=False, echo=None)
    results.put((str(out), count[0], _values(got)))


def test_concurrent_targets_craft_each_key_once(runs, tmp_path):
    """Two suites of one surrogate started together (a sweep's targets side by side): the
    first to miss a key crafts it holding the key's claim, the other waits and reads it, so
    the surrogate's examples are crafted once in all, and each target's records are those
    it gets without a cache."""
    ref = {n: _values(run_suite(runs[n], _suite(runs, cache=None), out=tmp_path / f"ref-{n}",
                                progress=False, echo=None)) for n in ("a", "b")}
    suite = _suite(runs, cache=str(tmp_path / "c"))
    mp = multiprocessing.get_context("spawn")
    barrier, results = mp.Barrier(2), mp.Queue()
    procs = [mp.Process(target=_suite_in_process,
                        args=(runs[n], suite, tmp_path / n, barrier, results)) for n in ("a", "b")]
    for p in procs:
        p.start()
    got = {}
    for _ in procs:
        out, crafted, values = results.get(timeout=300)
        got[out] = (crafted, values)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sum(c for c, _ in got.values()) == N_TRANSFER_UNITS * 3  # once, not twice
    for n in ("a", "b"):
        assert got[str(tmp_path / n)][1] == ref[n]
    assert not list((tmp_path / "c").glob("*.lock"))  # every claim released cleanly


def test_unit_whose_examples_are_being_crafted_elsewhere_runs_after_the_others(
        runs, tmp_path, monkeypatch):
    """A key that another process holds: its unit goes after the suite's other units (which
    craft their own keys meanwhile), then reads or crafts it; same records, in suite order."""
    from robens.evaluate import transfer_cache as tc
    from robens.filelock import LockBusy

    original, busy = tc.TransferCache.claim, []

    def claim(self, key, on_wait=None, wait=True):
        if not wait and not busy:  # the first key asked for: "another process" holds it
            busy.append(key)
            raise LockBusy(self.path(key), "pid 0")
        return original(self, key, on_wait, wait)

    ref = run_suite(runs["a"], _suite(runs, cache=str(tmp_path / "c0")), out=tmp_path / "ref",
                    progress=False, echo=None)
    monkeypatch.setattr(tc.TransferCache, "claim", claim)
    told: list[str] = []
    got = run_suite(runs["a"], _suite(runs, cache=str(tmp_path / "c")), out=tmp_path / "a",
                    progress=False, echo=told.append)
    assert len(busy) == 1
    first = ref["ran"][1]  # the first transfer unit, after the clean one
    assert got["ran"] == [u for u in ref["ran"] if u != first] + [first]
    assert any(first in m and "pid 0 is crafting" in m for m in told)
    assert [r["unit"] for r in got["records"]] == [r["unit"] for r in ref["records"]]
    assert _values(got) == _values(ref)
