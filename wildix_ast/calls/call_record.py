"""What Asterisk writes about every call for the call history, and the names it uses.

Asterisk writes two local append-only files in its log folder, synchronously as each record
is finished (no batch, no memory buffer; `docs/call_history.md`):

- `CDR_FILE`: one JSON object per line per CDR (a leg of a call: party A with one party B),
  written by cdr_custom in its "advanced" JSON format with the fields `CDR_FIELDS`;
- `CEL_FILE`: one JSON object per line per `LINKEDID_END` channel event, written by
  cel_custom: the last channel of a call (all its legs, a transfer's included) is gone.

The dialplan adds the PBX's meaning to the CDR with `Set(CDR(<name>)=...)`; the names are
the constants `WMS_*` below, so the dialplan code and the collector agree on them in one
place. The collecting service (`wildix_ast.services.call_history`) reads both files."""

from __future__ import annotations

from pathlib import PurePosixPath

CDR_FILE = "wildix-ast-cdr.json"
CEL_FILE = "wildix-ast-cel.json"

# CDR user variables set by the dialplan (`Set(CDR(name)=value)`).
WMS_DIRECTION = "wms_direction"
"""internal, incoming or outgoing."""
WMS_CALL_CLASS = "wms_class"
"""The outside call class of the dialled number (call_classes.CallClass value)."""
WMS_TRUNK = "wms_trunk"
"""The trunk a call went out through or came in by."""
WMS_CALLER_USER = "wms_caller"
"""The calling user's extension, when a user of the PBX called."""
WMS_CALLEE_USER = "wms_callee"
"""The called user's extension, when the call reached a user."""
WMS_CALLER_GROUP = "wms_caller_group"
WMS_CALLEE_GROUP = "wms_callee_group"
WMS_HANDLED_BY = "wms_handled_by"
"""The procedure, call group or IVR that handled the call (`procedure:name`, ...)."""
WMS_REFUSED = "wms_refused"
"""Why the PBX refused the call (`class`: the caller's group may not dial this class;
`limit`: the class limit or the toll-fraud brake)."""

WMS_FAX = "wms_fax"
"""`received` or `sent` when the call carried a fax (set by the fax dialplan's hang-up
handler, so a failed or cut fax is marked too)."""
WMS_FAX_JOB = "wms_fax_job"
"""The fax job's name (the faxing channel's UNIQUEID, digits and dots): with WMS_FAX_USER it
names the stored document (`services.fax.documents.document_reference`)."""
WMS_FAX_USER = "wms_fax_user"
"""The fax user who received it (or the user who sent it): whose document it is."""
WMS_FAX_STATUS = "wms_fax_status"
"""FAXOPT(status): SUCCESS, FAILED (FILTERed to letters and '_')."""
WMS_FAX_PAGES = "wms_fax_pages"
WMS_FAX_REMOTE = "wms_fax_remote"
"""The remote station id (caller-chosen: FILTERed like the job record's)."""
FAX_VARIABLES = (WMS_FAX, WMS_FAX_JOB, WMS_FAX_USER, WMS_FAX_STATUS, WMS_FAX_PAGES,
                 WMS_FAX_REMOTE)

USER_VARIABLES = (WMS_DIRECTION, WMS_CALL_CLASS, WMS_TRUNK, WMS_CALLER_USER, WMS_CALLEE_USER,
                  WMS_CALLER_GROUP, WMS_CALLEE_GROUP, WMS_HANDLED_BY, WMS_REFUSED,
                  *FAX_VARIABLES)

CDR_FIELDS = ("linkedid", "uniqueid", "sequence", "channel", "dstchannel", "src", "dst",
              "clid", "dcontext", "lastapp", "start(double)", "answer(double)", "end(double)",
              "disposition", "accountcode", "userfield",
              *(f"{name}(uservar)" for name in USER_VARIABLES))
"""cdr_custom's `fields`; a timestamp in `(double)` is epoch seconds with microseconds."""

CEL_FIELDS = ("eventtype", "eventtime", "linkedid", "uniqueid")


def cdr_path(log_dir: PurePosixPath) -> PurePosixPath:
    return log_dir / CDR_FILE


def cel_path(log_dir: PurePosixPath) -> PurePosixPath:
    return log_dir / CEL_FILE


# --- the toll-fraud brake (services.call_history.brake) ---------------------------------------

BRAKE_FOLDER = "wildix-brake"
"""Under Asterisk's spool folder: one empty file per braked (user, class), named by
`brake_flag`, whose modification time is when the brake lifts by itself. The dialplan only
stats it (`STAT(M,...)`, a local file system call): the call path never waits on the
collector or a database."""


def brake_flag(extension: str, call_class: str) -> str:
    return f"{extension}-{call_class}"


def brake_check(call_class: str, label: str) -> str:
    """The dialplan step that jumps to `label` when the calling user's brake for
    `call_class` is on (its flag's time is still ahead)."""
    flag = f"${{ASTSPOOLDIR}}/{BRAKE_FOLDER}/${{FILTER(0-9,${{CHANNEL(endpoint)}})}}-{call_class}"
    return f"GotoIf($[0${{STAT(M,{flag})}} > ${{EPOCH}}]?{label})"


OVER_LIMIT_MARK = f"Set(CDR({WMS_REFUSED})=limit)"
"""Marks the call's record `over_limit` before the dialplan refuses it: the toll-fraud
brake's 403, and the class limit's congestion (every line of a call class in use)."""
