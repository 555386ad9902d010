"""CLI conventions: eps as a number or a fraction, every --help lists the registries' choices and
ends with an example, and the example sweep works as shipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from robens import choices
from robens.cli import main
from robens.errors import InputError
from robens.evaluate.suite_config import load_suite
from robens.validation import parse_eps

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [["train"], ["run"], ["evaluate"], ["attack"], ["report"], ["sweep"], ["reproduce"],
            ["data", "info"], ["data", "download"]]


def help_text(capsys, monkeypatch, *command: str) -> str:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("TERMINAL_WIDTH", "250")
    assert main([*command, "--help"]) == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_help_ends_with_an_example_of_that_command(capsys, monkeypatch, command):
    text = help_text(capsys, monkeypatch, *command)
    example = choices.EXAMPLES[" ".join(command)]
    assert text.endswith(f"Example: {example}")
    assert example.startswith("robens " + " ".join(command) + " ")


@pytest.mark.parametrize(("command", "names"), [
    (["train"], ["models", "terms", "strategies", "datasets"]),
    (["attack"], ["attacks"]),
    (["data", "info"], ["datasets"]),
    (["reproduce"], ["recipes"]),
])
def test_help_lists_the_registries(capsys, monkeypatch, command, names):
    text = help_text(capsys, monkeypatch, *command)
    for kind in names:
        listed = getattr(choices, kind)()
        for name in listed.replace(",", " ").replace("|", " ").split():
            if name.startswith("test_"):
                continue  # registered by another test after the CLI's help was built
            assert name in text, f"{' '.join(command)} --help does not list {kind} {name!r}"
    if command == ["attack"]:
        assert "8/255" in text  # the fraction form of --eps is documented


@pytest.mark.parametrize(("text", "value"), [
    ("8/255", 8 / 255), ("0.1", 0.1), (" 2/255 ", 2 / 255), (0.03, 0.03), (1, 1.0)])
def test_parse_eps(text, value):
    assert parse_eps(text) == pytest.approx(value)


@pytest.mark.parametrize("bad", ["8/0", "eight", "8/255/2", "", True, "nan"])
def test_parse_eps_rejects_bad_values(bad):
    with pytest.raises(InputError, match="eps"):
        parse_eps(bad)


def test_bad_eps_is_one_error_line(capsys):
    assert main(["attack", "no-such-run", "--eps", "8/zero"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --eps") and "8/zero" in err[0]


def test_suite_yaml_takes_fraction_eps(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text("attacks:\n  - {attack: pgd, eps: ['8/255', 0.1]}\n"
                    "  - {attack: fgsm, eps: 4/255}\n")
    suite = load_suite(path)
    assert suite.attacks[0].eps == pytest.approx([8 / 255, 0.1])
    assert suite.attacks[1].eps == pytest.approx([4 / 255])
    path.write_text("attacks:\n  - {attack: pgd, eps: ['8/x']}\n")
    with pytest.raises(Exception, match="eps"):
        load_suite(path)


def test_example_sweep_works_as_shipped(capsys):
    from robens.sweep import plan_sweep

    grid = ROOT / "configs/sweeps/example.yaml"
    assert main(["sweep", str(grid), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "sweep example: 6 trial(s)" in out and out.count("pending") + out.count("done") >= 6
    plan = plan_sweep(grid)
    suite = load_suite(plan.suite)  # the suite it names exists and validates
    assert {a.attack for a in suite.attacks} == {"fgsm", "pgd"}
    assert 8 / 255 in [pytest.approx(e) for a in suite.attacks for e in a.eps]
