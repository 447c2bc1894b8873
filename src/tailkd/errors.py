"""Errors a user can act on. The CLI prints their message alone, without a traceback."""


class TailkdError(Exception):
    """Base class: the message names the problem and, where possible, the fix."""


class ConfigError(TailkdError):
    """A config value is unknown, out of range or inconsistent with another."""


class DataError(TailkdError):
    """A data file is missing or a row lacks what the task needs."""
