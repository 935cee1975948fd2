"""The Mail2Fax T.38 switch, with and without the fax half's wait for its bridge (docs/fax.md
"The T.38 switch through the dialer's Local channel"), side by side, with full traces.

The path of tests/live/test_mail2fax_round_live.py's T.38 half without the mail servers:
the site's dialplan as rendered (`wildix-fax-send-call` / `wildix-fax-send`, the routing
procedure `faxout`), a request in AstDB and `channel originate Local/<id>@...` through the
console as the dialer does, out over trunk `faxt38`, through the relay (0-40 ms jitter) to
the carrier lab, which dials back to the fax DID (ReceiveFAX). Each variant sends `--runs`
faxes of `--pages` pages one after the other and counts: T.38 switched (UDPTL datagrams
through the relay), "refused to negotiate T.38" in the site's log, fax status. The variant
`no-wait` is a lab-only edit of the rendered `wildix-fax-send` (its wait loop skipped, as
before the fix), reloaded with `dialplan reload`.

SIP, fax and res_fax/res_pjsip_t38/chan_pjsip/core_local/res_pjsip_session/bridge debug logs
of both Asterisks go to their `debug` logger channel; `--keep DIR` keeps them. The outcome
without the wait is a race decided within a millisecond (SendFAX's start against the
bridge), so it varies from run to run and with how much is logged.

    sudo .venv/bin/python bench/fax_t38_trace.py --runs 4 --pages 1 --keep /tmp/t38trace
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from live.test_mail2fax_round_live import CARRIER, CARRIER_MODULES, NUMBERS, _faxout
from support.fax_pages import fax_tiff, make_pdf
from support.fax_sip import FaxLine, fax_line

from wildix_ast.asterisk import names
from wildix_ast.model.site import Site

DEBUG = ("pjsip set logger on", "fax set debug on", "core set debug 5 res_fax.so",
         "core set debug 5 res_pjsip_t38.so", "core set debug 5 chan_pjsip.so",
         "core set debug 5 core_local", "core set debug 5 bridge_native_rtp.so",
         "core set debug 5 res_pjsip_session.so", "core set debug 5 bridge_simple.so",
         "core set verbose 5", "logger add channel debug notice,warning,error,verbose,debug")
SENDER = "102"  # the example's Bruno, ACL group default
VARIANTS = ("no-wait", "wait")


def _changes(site: Site) -> Site:
    dialplan = site.dialplan.model_copy(update={
        "procedures": [*site.dialplan.procedures, _faxout()]})
    return site.model_copy(update={"dialplan": dialplan})


def _set_variant(line: FaxLine, variant: str, rendered: str) -> None:
    path = line.site.lab.etc_dir / "extensions.conf"
    text = rendered
    if variant == "no-wait":
        text, count = re.subn(r"same => n\(bridged\),GotoIf\([^\n]*\n",
                              "same => n(bridged),Goto(send)\n", rendered)
        assert count == 1, "the rendered wildix-fax-send has no bridge wait to skip"
    path.write_text(text)
    line.site.lab.cli("dialplan reload")


def _send_one(line: FaxLine, tiff: Path, request: str, timeout: float) -> dict[str, str]:
    lab = line.site.lab
    out = lab.host_path(lab.paths.fax_out_spool)
    tag = os.urandom(8).hex()[:names.FAX_SEND_ID_DIGITS]
    target = out / "send" / f"{tag}.tif"
    shutil.copy(tiff, target)
    os.chmod(target, 0o644)

    async def originate() -> None:
        async with line.site.console() as console:
            await console.command(f"database put {names.FAX_SEND_FAMILY} {tag} {request}")
            await console.command(f"channel originate Local/{tag}@"
                                  f"{names.FAX_SEND_CALL_CONTEXT} extension "
                                  f"{tag}@{names.FAX_SEND_CONTEXT}")

    asyncio.run(originate())
    record = out / "done" / f"{tag}.fax"
    deadline = time.monotonic() + timeout
    while not record.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(0.5)
    fields = dict(entry.split("=", 1) for entry in record.read_text().splitlines()
                  if "=" in entry) if record.exists() else {}
    line.site.wait_no_channels(30)
    return fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="faxes per variant")
    parser.add_argument("--pages", type=int, default=1)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep both labs' logs")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    rows: list[tuple[str, int, int, int, int, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-t38-") as tmp, \
            fax_line(Path(tmp), loss=0.0, jitter=0.040, carrier_dialplan=CARRIER,
                     carrier_modules=CARRIER_MODULES, site_changes=_changes) as line:
        lab = line.site.lab
        for command in DEBUG:
            lab.cli(command)
            line.sender.cli(command)
        out = lab.host_path(lab.paths.fax_out_spool)
        for sub in ("send", "tmp", "done"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        tiff = fax_tiff(make_pdf(Path(tmp) / "o.pdf", args.pages), Path(tmp) / "o.tif")
        sender = next(u for u in line.site.compiled.site.users if u.extension == SENDER)
        # the dialer's request: group|DID|caller number|procedure|number
        request = (f"{sender.group}|{sender.office_did or ''}|{SENDER}|faxout|"
                   f"{NUMBERS['t38']}")
        rendered = (lab.etc_dir / "extensions.conf").read_text()
        messages = lab.log_dir / "messages.log"
        for variant in variants:
            _set_variant(line, variant, rendered)
            switched = refused = complete = 0
            statuses: list[str] = []
            for run in range(args.runs):
                line.relays["t38"].reset_stats()
                start = messages.stat().st_size
                fields = _send_one(line, tiff, request, 60 + 60 * args.pages)
                udptl = line.relays["t38"].totals()[("udptl", "forwarded")]
                with messages.open("rb") as log:
                    log.seek(start)
                    refusal = b"refused to negotiate T.38" in log.read()
                switched += udptl > 0
                refused += refusal
                ok = fields.get("status") == "SUCCESS" and fields.get("pages") == str(args.pages)
                complete += ok
                statuses.append(fields.get("status") or "no record")
                print(f"{variant} run {run + 1}: UDPTL {udptl}, refused {refusal}, "
                      f"status {fields.get('status')}, pages {fields.get('pages')}",
                      flush=True)
            rows.append((variant, args.runs, switched, refused, complete,
                         ", ".join(sorted(set(statuses)))))
        _set_variant(line, "wait", rendered)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for name, instance in (("site", lab), ("carrier", line.sender)):
                for log_file in instance.log_dir.glob("*"):
                    if log_file.is_file():
                        shutil.copy(log_file, args.keep / f"{name}-{log_file.name}")
    table = Table(title=f"Mail2Fax T.38 switch through the dialer's Local channel: "
                        f"{args.pages}-page faxes, 0-40 ms jitter (lab, 2 shared cores: "
                        "timings under load)")
    for column in ("fax half", "faxes", "switched to T.38", "refused", "complete",
                   "statuses"):
        table.add_column(column)
    for variant, runs, switched, refused, complete, seen in rows:
        table.add_row("no bridge wait (before the fix)" if variant == "no-wait" else
                      "bridge wait (the product)", str(runs), str(switched), str(refused),
                      str(complete), seen)
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
