"""The one exception type whose message reaches the user as one line."""


class OciError(Exception):
    """Bad input, a refused configuration or a failed operation: `ringvisor-oci: <message>`,
    exit status 1 (as runc)."""
    exit_code = 1


def describe(exc):
    """One line for an OSError or OciError raised while setting a container up."""
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return str(exc)
