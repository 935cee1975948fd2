"""Mail2Fax in the dialplan: the fax call's two halves and their hang-up handlers.

Not a generated file (extensions.py lays these out). The fax sender
(services/fax/outbound.py) puts the TIFF in `<astspooldir>/wildix-fax-out/send/<id>.tif`,
the request `group|DID|caller number|procedure|number` in AstDB (`wildix-fax-send/<id>`), and
originates through Asterisk's console `Local/<id>@wildix-fax-send-call` with the other half
at `<id>@wildix-fax-send`:

- the dialled half (`wildix-fax-send-call`) takes and deletes the one-time request (a
  second call with the same id finds nothing and is refused), pushes its hang-up handler
  and enters the routing procedure's context as the sender (their ACL group in the
  endpoint's variable, their number): the same class checks as a call from their phone, so
  a fax cannot reach a class the sender may not call; its handler writes `<id>.call`
  (DIALSTATUS, HANGUPCAUSE): it is written whether or not the callee answered;
- the fax half (`wildix-fax-send`) runs once the callee answered: ECM on, `SendFAX` of the
  TIFF (T.38 when the far end switches, else G.711 audio: `f` allows the fallback); its
  handler writes `<id>.fax` (status, pages, duration, remote station...).

Each record is written in `tmp/` and moved into `done/` with one `mv` (the service reads
only `done/`). The id is FILTERed to hex digits, every FAXOPT value and the remote station
id (chosen by the callee) as fax_contexts.py does: no callee-chosen byte reaches a file
name or the shell, none can add a line to a record.
"""

from __future__ import annotations

from wildix_ast.asterisk import names
from wildix_ast.asterisk.dialplan_builder import REJECTED, Context, extension, var
from wildix_ast.asterisk.fax_contexts import fax_history_marks
from wildix_ast.calls import variables as v

FAX_RECORD_FIELDS = ("job", "uid", "status", "statusstr", "error", "pages", "duration",
                     "remote", "rate", "ecm", "resolution")
"""The `.fax` record's keys, in the order its hang-up handler writes them."""
CALL_RECORD_FIELDS = ("job", "dialstatus", "cause")
"""The `.call` record's keys."""

_STATION = "0-9A-Za-z +."
_FAXOPT = "0-9A-Za-z_ :.+"
_ID = "0-9a-f"


def _id_pattern() -> str:
    return "_" + "[0-9a-f]" * names.FAX_SEND_ID_DIGITS


def _write(record_var: str, suffix: str, lines: list[tuple[str, str]]) -> list[str]:
    spool, job = var(v.FAX_OUT_SPOOL), var(v.FAX_OUT_JOB)
    record = var(record_var)
    return [f"Set({record_var}={spool}/tmp/{job}.{suffix})",
            f"Set(FILE({record})=)",
            *(f"Set(FILE({record},,,al,u)={key}={value})" for key, value in lines),
            f"System(mv -f -- {spool}/tmp/{job}.{suffix} {spool}/done/)"]


def send_call_context() -> Context:
    def field(k: int) -> str:
        return f"${{CUT({v.FAX_OUT_REQUEST},|,{k})}}"

    return Context(names.FAX_SEND_CALL_CONTEXT, (extension(
        _id_pattern(),
        f"Set({v.FAX_OUT_REQUEST}=${{DB_DELETE({names.FAX_SEND_FAMILY}/${{EXTEN}})}})",
        f"GotoIf($[\"{var(v.FAX_OUT_REQUEST)}\" = \"\"]?refused)",
        f"Set({v.FAX_OUT_JOB}=${{FILTER({_ID},${{EXTEN}})}})",
        f"Set(CHANNEL(hangup_handler_push)={names.FAX_SEND_CALL_DONE_CONTEXT},s,1)",
        f"Set({v.GROUP}={field(1)})", f"Set({v.DID}={field(2)})",
        f"Set(CALLERID(num)={field(3)})",
        # the call history's: the sender (read by the fax half) and the number dialled
        f"Set(SHARED({v.FAX_OUT_USER})=${{FILTER(0-9,{field(3)})}})",
        f"Set(CDR(userfield)=${{FILTER(0-9+,{field(5)})}})",
        f"Goto({names.PROCEDURE_PREFIX}{field(4)},{field(5)},1)",
        ("refused", f"Hangup({REJECTED})")),),
        comment=("Mail2Fax (wildix_ast/asterisk/fax_send_contexts.py): the dialled half, "
                 "as the sender's ACL group.",))


def send_call_done_context() -> Context:
    lines = [("job", var(v.FAX_OUT_JOB)),
             ("dialstatus", "${FILTER(A-Z,${DIALSTATUS})}"),
             ("cause", "${FILTER(0-9,${HANGUPCAUSE})}")]
    return Context(names.FAX_SEND_CALL_DONE_CONTEXT, (extension(
        "s",
        f'GotoIf($["{var(v.FAX_OUT_JOB)}" = ""]?done)',
        *_write(v.FAX_OUT_RECORD, "call", lines),
        ("done", "Return()")),))


BRIDGE_WAIT_STEP = 0.05
"""Seconds of each wait of the fax half for its dialled half's bridge (see send_context)."""
BRIDGE_WAIT_STEPS = 60
"""At most this many waits (3 s): the bridge forms within milliseconds of the answer."""


def send_context() -> Context:
    """The fax half. SendFAX must not start before the dialled half (`;2`) is bridged to
    the callee's channel: SendFAX asks its own channel for the T.38 state once, at its
    start, and a Local channel answers that question by asking the channel bridged to its
    other half (core_unreal.c `ast_unreal_queryoption`); with no bridge yet the answer is
    "unavailable", SendFAX settles for audio and refuses the callee's T.38 re-INVITE a few
    seconds later (res_fax.c `set_fax_t38_caps`, generic_fax_exec: "refused to negotiate
    T.38"). The fax half runs as soon as the answer reaches it, in a race with that
    bridge; so it waits (bounded) until the dialled half has a BRIDGEPEER. Wait() keeps
    control frames (a T.38 request arriving meanwhile is re-queued, not lost)."""
    spool, job = var(v.FAX_OUT_SPOOL), var(v.FAX_OUT_JOB)
    waits = var(v.FAX_OUT_WAITS)
    dialled_half = "${CHANNEL(name):0:-1}2"
    return Context(names.FAX_SEND_CONTEXT, (extension(
        _id_pattern(),
        f"Set({v.FAX_OUT_JOB}=${{FILTER({_ID},${{EXTEN}})}})",
        f"Set({v.FAX_OUT_START}=${{EPOCH}})",
        # the call history's marks (fax_history_marks): this channel's id names the sent
        # document; the sender is the dialled half's (`;2`, still up: it answered)
        f"Set({v.FAX_JOB}=${{FILTER(0-9.,${{UNIQUEID}})}})",
        f"Set({v.FAX_USER}=${{FILTER(0-9,${{SHARED({v.FAX_OUT_USER},"
        f"${{CHANNEL(name):0:-1}}2)}})}})",
        f"Set(CHANNEL(hangup_handler_push)={names.FAX_SEND_DONE_CONTEXT},s,1)",
        "Set(FAXOPT(ecm)=yes)",
        f"Set({v.FAX_OUT_WAITS}=0)",
        ("bridged", f"GotoIf($[${{LEN(${{IMPORT({dialled_half},BRIDGEPEER)}})}} > 0 | "
                    f'{waits} >= {BRIDGE_WAIT_STEPS}]?send)'),
        f"Wait({BRIDGE_WAIT_STEP})",
        f"Set({v.FAX_OUT_WAITS}=$[{waits} + 1])",
        "Goto(bridged)",
        ("send", f"SendFAX({spool}/send/{job}.tif,f)"),
        "Hangup()"),),
        comment=("Mail2Fax: the half that sends once the callee answered.",))


def send_done_context() -> Context:
    faxopt = {name: f"${{FILTER({_FAXOPT},${{FAXOPT({name})}})}}"
              for name in ("status", "statusstr", "error", "pages", "rate", "ecm",
                           "resolution")}
    values = {"job": var(v.FAX_OUT_JOB), "uid": var(v.FAX_JOB),
              "duration": f"$[${{EPOCH}} - {var(v.FAX_OUT_START)}]",
              "remote": f"${{FILTER({_STATION},${{FAXOPT(remotestationid)}})}}", **faxopt}
    return Context(names.FAX_SEND_DONE_CONTEXT, (extension(
        "s",
        f'GotoIf($["{var(v.FAX_OUT_JOB)}" = ""]?done)',
        *fax_history_marks("sent"),
        *_write(v.FAX_OUT_RECORD, "fax", [(k, values[k]) for k in FAX_RECORD_FIELDS]),
        ("done", "Return()")),))


def fax_send_contexts() -> list[Context]:
    """The contexts of this module, in file order."""
    return [send_call_context(), send_call_done_context(), send_context(),
            send_done_context()]
