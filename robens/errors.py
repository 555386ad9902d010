"""Library exceptions. Every user error raised by robens derives from :class:`RobensError`.

The CLI prints these as one line (``error: ...``) and exits with status 2, no traceback.
"""

from __future__ import annotations


class RobensError(Exception):
    """Base class of every error robens raises on purpose."""


class InputError(RobensError, ValueError):
    """A tensor or argument passed to the API is malformed (shape, dtype, range, class count)."""


class DatasetError(RobensError):
    """A dataset is missing, corrupt or malformed."""


class ConfigError(RobensError, ValueError):
    """An experiment config is malformed: unknown key, wrong type or impossible value."""


class CheckpointError(RobensError):
    """A checkpoint is missing, truncated, edited or incompatible."""


class TrainingError(RobensError):
    """Training hit a non-finite loss or gradient, or another unrecoverable fault."""


class RunLockedError(RobensError):
    """Another process holds the lock of a run directory."""
