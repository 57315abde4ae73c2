"""Errors a user can act on. Each message names the problem and the fix; the CLI prints it without a traceback."""


class CifarTimmError(Exception):
    """Base class of cifar-timm's user-facing errors."""
