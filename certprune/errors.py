"""certprune's error types: every user-facing failure is one of these, with a message that
names the problem. The CLI prints the message on one line and exits with code 2."""


class CertpruneError(Exception):
    """Base class of every error certprune raises on purpose (bad input, unsupported model)."""


class ModelLoadError(CertpruneError):
    """A model file could not be read (corrupt, wrong format, NaN weights, untrusted pickle)."""


class UnsupportedModelError(ModelLoadError):
    """The model uses operators or layers certprune cannot handle; the message lists all of them."""


class SpecError(CertpruneError):
    """A property, region or specification is malformed or does not fit the model."""


class VNNLibError(SpecError):
    """A VNN-LIB file could not be parsed (unknown construct, bad variable, syntax)."""


class InputRegionError(SpecError):
    """An input box is invalid: lower > upper, NaN/inf, or wrong shape."""


class ShapeMismatchError(CertpruneError):
    """An input, box or property does not match the model's input or output shape."""


class DatasetError(CertpruneError):
    """A data set or schema could not be loaded, or a feature name is unknown."""


class ConfigError(CertpruneError):
    """A configuration value is invalid (unknown key, out-of-range number, unknown method)."""


class StoreBusyError(CertpruneError):
    """A result store (``--out`` folder) is locked by another running certprune process."""


class DeadlineExceeded(Exception):
    """A time budget ran out inside a phase that checks its deadline between steps (one bound
    pass, densifying a model). Not an input error: ``verify`` turns it into UNKNOWN (timeout)."""


def check_deadline(deadline: float | None, where: str) -> None:
    """Raise DeadlineExceeded when ``time.monotonic()`` is past ``deadline`` (None: no limit)."""
    import time
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlineExceeded(f"deadline passed during {where}")
