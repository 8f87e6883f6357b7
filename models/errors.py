"""Errors raised by the ML layer. The HTTP layer maps them to responses; they never carry HTTP codes."""


class ModelError(Exception):
    """Base class for failures in models/."""


class DataError(ModelError, ValueError):
    """Input data (a dataset file, a taxonomy, a checkpoint manifest) is malformed."""


class CheckpointError(ModelError):
    """A checkpoint folder is missing or incomplete."""


class HardwareError(ModelError):
    """The requested device, dtype or quantisation is not available on this machine."""


def check_arguments(owner: object, checks: dict[str, bool], what: str = "argument") -> None:
    """Raise DataError naming every field of ``owner`` whose check failed, with its value."""
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        raise DataError(f"invalid {what}(s): {', '.join(f'{b}={getattr(owner, b)!r}' for b in bad)}")
