"""The one error of the SIPp driver."""


class SippError(RuntimeError):
    """SIPp could not be run, or a result was checked and did not match."""
