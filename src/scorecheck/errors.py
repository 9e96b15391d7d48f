"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class ScorecheckError(Exception):
    """Base class: the message is shown to the user as is, on one line."""

    exit_code = 2


class UsageError(ScorecheckError):
    """Bad input: unknown eval, protocol or option, bad configuration."""


class DataError(ScorecheckError):
    """A benchmark file is missing, unreachable or corrupt."""


class EndpointError(ScorecheckError):
    """The model endpoint is unreachable or does not behave as the run needs."""


class RunAborted(ScorecheckError):
    """The run stopped early; everything finished so far is kept."""

    exit_code = 3


class RunLocked(ScorecheckError):
    """Another scorecheck process holds the run directory."""


class StoreError(ScorecheckError):
    """The run directory cannot be written (a file, read-only, a full disk); what was committed is kept."""
