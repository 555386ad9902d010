"""The registries' names for the CLI's help texts and errors (one source for every list).

Each function imports its registry lazily, so ``robens --help`` lists exactly what is
registered (plug-ins included) and nothing is hard-coded in the CLI.
"""

from __future__ import annotations


def _join(names: list[str]) -> str:
    return " | ".join(names)


def attacks() -> str:
    from robens.attacks import ATTACKS

    return _join(ATTACKS.in_order())


def models() -> str:
    from robens.models import list_models

    return _join(list_models())


def terms() -> str:
    from robens.objectives import list_terms

    return ", ".join(list_terms())


def datasets() -> str:
    from robens.data.datasets import list_datasets

    return _join(list_datasets())


def strategies() -> str:
    from robens.training.strategies.base import STRATEGIES

    return _join(STRATEGIES.names())


def recipes() -> str:
    from robens.recipes import list_recipes

    return _join(list_recipes())


#: one worked example per command, shown at the end of its ``--help`` (typer's ``epilog``)
EXAMPLES = {
    "train": "robens train --dataset fashion-mnist --model lenet --members 3"
             " --objective 'ce + 0.5*gal' --epochs 2 --out runs/gal",
    "run": "robens run configs/main.yaml",
    "evaluate": "robens evaluate runs/gal --suite configs/suites/main.yaml",
    "attack": "robens attack runs/gal --attack pgd --eps 8/255 --steps 20",
    "report": "robens report runs/main runs/gal --out report",
    "sweep": "robens sweep configs/sweeps/example.yaml --dry-run",
    "reproduce": "robens reproduce diversity-training --scale quick --dataset fashion-mnist",
    "data info": "robens data info fashion-mnist",
    "data download": "robens data download mnist",
}


def example(command: str) -> str:
    """The ``--help`` epilog of ``command``: ``Example: <command line>``."""
    return f"Example: {EXAMPLES[command]}"
