"""Play real SIP phones against an Asterisk with SIPp (Debian package ``sip-tester``)."""

from wildix_ast.sip_test.sipp import (
    CallResult,
    LoadHandle,
    LoadResult,
    RegisterResult,
    SippDriver,
    SippError,
    SippRun,
    UasHandle,
    UasResult,
    free_port,
)

__all__ = [
    "CallResult",
    "LoadHandle",
    "LoadResult",
    "RegisterResult",
    "SippDriver",
    "SippError",
    "SippRun",
    "UasHandle",
    "UasResult",
    "free_port",
]
