"""Errors that reach the user as one clear line and a non-zero exit code.

Anything raised as a RingvisorError is the user's input or the guest's
behaviour, not a bug in ringvisor: the command line prints `ringvisor: <message>`
and exits with `exit_code`, never a traceback.
"""


class RingvisorError(Exception):
    exit_code = 2


class ConfigError(RingvisorError):
    """Bad command-line or machine configuration (sizes, paths, options)."""


class GuestImageError(RingvisorError):
    """A kernel, module or payload that cannot be loaded."""


class KvmUnavailable(RingvisorError):
    """/dev/kvm is missing, not accessible, or too old."""
    exit_code = 3


class GuestMemoryError(RingvisorError):
    """An access outside guest RAM made by the VMM on the guest's behalf."""


class GuestCrashed(RingvisorError):
    """The guest stopped in a way that is not a clean exit (triple fault,
    internal error, hang); the message carries the guest state report."""
    exit_code = 4
