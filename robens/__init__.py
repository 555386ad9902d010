"""robens: adversarially robust model ensembles in PyTorch."""

__version__ = "0.1.0"
