"""Errors that reach the user as a clear message, never as a traceback.

The CLI catches `RationalystError` and prints its message; everything else is a bug.
"""


class RationalystError(Exception):
    """Base class: a problem the user can fix (bad input, missing model, bad config)."""


class ConfigError(RationalystError):
    """A config or recipe file is invalid; the message names the file, line and field."""


class ModelNotFoundError(RationalystError):
    """A model spec names something that is not installed; the message says how to install it."""


class InputError(RationalystError):
    """Input data is malformed; the message names the file, line and field."""


class PromptTooLongError(RationalystError):
    """One prompt does not fit the model's context window.

    The one error that belongs to an item rather than to the run: a stage skips (and counts) the item
    and goes on. Every other error of a model (server down, a refused API key, a missing file) stops
    the run with finished work saved, so that a resume redoes the rest instead of marking it failed.
    """
