"""Exceptions that the command frame turns into one-line messages and exit codes."""


class VtcavError(Exception):
    """A problem with the user's input or data: reported as one line, exit status 1."""

    exit_code = 1


class UsageError(VtcavError):
    """Bad usage (options that contradict each other, unknown names): exit status 2."""

    exit_code = 2


class IncompatibleError(VtcavError):
    """Two files that must describe the same model/layers/sampling do not."""
