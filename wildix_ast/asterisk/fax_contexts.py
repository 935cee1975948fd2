"""Fax2Mail in the dialplan: the fax receive subroutine and its hang-up handler.

Not a generated file (extensions.py lays these out). A call to a user's fax DID (from a
trunk, `wildix-did`) or to a fax user's extension (`wildix-extensions`) goes to
`wildix-fax-receive`: ECM on, ReceiveFax writes `<astspooldir>/wildix-fax/tmp/<job>.tif`
(T.38 when the calling endpoint offers it, else G.711 audio). Whatever happens (a fax, a
voice caller, a hang-up mid-page) the hang-up handler `wildix-fax-done` writes the job record
`tmp/<job>.job` (one `key=value` a line: the FAXOPT values, caller, DID, duration) and
moves both into `new/` with one `mv`, the record last: the Fax2Mail service
(services/fax/inbound.py) only takes records in `new/`, so it never sees half a job. It also
marks the call's CDR as a fax (`wms_fax*`: status, pages, remote station, job), which the
call history turns into the record's fax fields and document reference.

The caller's number and the remote station id are chosen by the caller: FILTER keeps only
digits and '+' (and letters, space and '.' for the station id) before either reaches the
record, so neither can add a line to it; the only values in the `mv` command line are the
spool folder (asterisk.conf's) and the job name (the UNIQUEID, FILTERed to digits and '.').
"""

from __future__ import annotations

from wildix_ast.asterisk import names
from wildix_ast.asterisk.dialplan_builder import Context, Extension, extension, var
from wildix_ast.calls import variables as v
from wildix_ast.calls.call_record import (
    WMS_FAX,
    WMS_FAX_JOB,
    WMS_FAX_PAGES,
    WMS_FAX_REMOTE,
    WMS_FAX_STATUS,
    WMS_FAX_USER,
)

RECORD_FIELDS = ("job", "user", "did", "from", "status", "statusstr", "error", "pages",
                 "duration", "remote", "rate", "ecm", "resolution")
"""The job record's keys, in the order the hang-up handler writes them."""

_STATION = "0-9A-Za-z +."
_FAXOPT = "0-9A-Za-z_ :.+"


def receive_fax(user: str, did: str) -> str:
    """The step that receives a fax for the fax user at extension `user` (digits from the
    model); `did` is the number called (digits, or empty for an internal call)."""
    return f"Gosub({names.FAX_RECEIVE_CONTEXT},s,1({user},{did}))"


def fax_extension(number: str, user: str, did: str = "") -> Extension:
    return extension(number, receive_fax(user, did), "Hangup()")


def _record_lines() -> list[tuple[str, str]]:
    faxopt = {name: f"${{FILTER({_FAXOPT},${{FAXOPT({name})}})}}"
              for name in ("status", "statusstr", "error", "pages", "rate", "ecm",
                           "resolution")}
    values = {"job": var(v.FAX_JOB), "user": var(v.FAX_USER), "did": var(v.FAX_DID),
              "from": var(v.FAX_FROM),
              "duration": f"$[${{EPOCH}} - {var(v.FAX_START)}]",
              "remote": f"${{FILTER({_STATION},${{FAXOPT(remotestationid)}})}}", **faxopt}
    return [(key, values[key]) for key in RECORD_FIELDS]


def fax_receive_context() -> Context:
    spool, job = var(v.FAX_SPOOL), var(v.FAX_JOB)
    return Context(names.FAX_RECEIVE_CONTEXT, (extension(
        "s",
        f"Set({v.FAX_JOB}=${{FILTER(0-9.,${{UNIQUEID}})}})",
        f"Set({v.FAX_USER}=${{FILTER(0-9,${{ARG1}})}})",
        f"Set({v.FAX_DID}=${{FILTER(0-9+,${{ARG2}})}})",
        f"Set({v.FAX_FROM}=${{FILTER(0-9+,${{CALLERID(num)}})}})",
        f"Set({v.FAX_START}=${{EPOCH}})",
        f"Set(CHANNEL(hangup_handler_push)={names.FAX_DONE_CONTEXT},s,1)",
        "Set(FAXOPT(ecm)=yes)",
        "Answer()",
        f"ReceiveFAX({spool}/tmp/{job}.tif,f)",
        "Return()"),),
        comment=("Fax2Mail (wildix_ast/asterisk/fax_contexts.py): ARG1 the fax user's "
                 "extension, ARG2 the DID called.",))


def fax_history_marks(direction: str) -> list[str]:
    """The steps that put the fax into the call's record (calls/call_record.py): run in
    the hang-up handler, so a failed or cut fax is marked too. Every value is FILTERed
    (FAXOPT values and the station id are the remote side's)."""
    return [f"Set(CDR({WMS_FAX})={direction})",
            f"Set(CDR({WMS_FAX_JOB})={var(v.FAX_JOB)})",
            f"Set(CDR({WMS_FAX_USER})={var(v.FAX_USER)})",
            f"Set(CDR({WMS_FAX_STATUS})=${{FILTER(A-Z_,${{FAXOPT(status)}})}})",
            f"Set(CDR({WMS_FAX_PAGES})=${{FILTER(0-9,${{FAXOPT(pages)}})}})",
            f"Set(CDR({WMS_FAX_REMOTE})=${{FILTER({_STATION},${{FAXOPT(remotestationid)}})}})"]


def fax_done_context() -> Context:
    spool, job = var(v.FAX_SPOOL), var(v.FAX_JOB)
    record = var(v.FAX_RECORD)
    writes = [f"Set(FILE({record},,,al,u)={key}={value})" for key, value in _record_lines()]
    return Context(names.FAX_DONE_CONTEXT, (extension(
        "s",
        f'GotoIf($["{job}" = ""]?done)',
        f"Set({v.FAX_RECORD}={spool}/tmp/{job}.job)",
        f"Set(FILE({record})=)",
        *writes,
        *fax_history_marks("received"),
        f"System(mv -f -- {spool}/tmp/{job}.tif {spool}/tmp/{job}.job {spool}/new/)",
        ("done", "Return()")),),
        comment=("Fax2Mail's hang-up handler: the job record, then tif and record into "
                 "new/ (the record last).",))


def fax_contexts() -> list[Context]:
    """The contexts of this module, in file order."""
    return [fax_receive_context(), fax_done_context()]
