"""Error types raised by uniimb_jax.

Every failure that a user can cause (a broken archive, a missing dataset, an invalid
configuration) raises a subclass of :class:`UniImbError` whose message names the file, field
or value at fault; the CLI prints that message and exits non-zero instead of a traceback.
"""

from __future__ import annotations


class UniImbError(Exception):
    """Base class of every error this library raises on purpose."""


class DataError(UniImbError):
    """A dataset file is missing, malformed or inconsistent.

    The message names the file and, where it applies, the 1-based line number.
    """


class DatasetNotFoundError(DataError):
    """A dataset could not be found locally (offline) or downloaded."""


class SplitError(UniImbError):
    """A requested split cannot be drawn from the dataset's class counts."""


class ConfigError(UniImbError):
    """A configuration field holds a value outside its allowed range."""


class CheckpointError(UniImbError):
    """A checkpoint could not be written, read or restored."""


class WorkdirBusyError(UniImbError):
    """Another live process is training in the same work directory."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C (SIGINT) after saving its progress; not an error.

    A ``KeyboardInterrupt`` (the CLI exits with status 130). The message says where the
    progress is saved and how to resume.
    """


def check_choice(field: str, value, allowed) -> None:
    """Raises :class:`ConfigError` naming ``field``, ``value`` and the ``allowed`` values
    unless ``value`` is one of them (every configuration's name check)."""
    if value not in allowed:
        raise ConfigError(f"{field}={value!r} is not valid; expected one of {list(allowed)}")
