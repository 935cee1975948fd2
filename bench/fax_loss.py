"""G.711 fax through packet loss: variants of the receiving side, measured on the lab (issue 20,
must-show 2's G.711 half; docs/fax.md "G.711 under loss").

Each variant starts its own fax line (tests/support/fax_sip.py: the site's lab rendered from
the settings, the plain sender lab, `MediaRelay` between them with the same seeded 1 % loss
and 0-40 ms jitter as the test), changes the site's *rendered* fax receive context in the
lab (a lab-only edit of the generated extensions.conf, then `dialplan reload`: these
variants are what was tried, not product settings), sends `--runs` 2-page faxes over the
`faxg711` trunk, `--concurrency` at a time, and reads the T.30 trace of every reception
(spandsp's log through `fax set debug on`, into a logger channel of the site's lab).

Variants (steps run before `Answer()` in `wildix-fax-receive`):

- `default`: what the product renders (ECM on; V.17, V.29, V.27ter offered; 14 400 bit/s);
- `v29`: `FAXOPT(modems)=v27,v29` + `FAXOPT(maxrate)=9600` (res_fax_spandsp chooses
  modems from `modems` only: `maxrate` alone changes nothing but the check against it);
- `v27`: `FAXOPT(modems)=v27` + `maxrate=4800`;
- `no-ecm`, `v29-no-ecm`, `v27-no-ecm`: the same with `FAXOPT(ecm)=no`;
- `plc`: the trunk channel gets `JITTERBUFFER(fixed)=200` and dials a Local channel whose
  other half runs the receive context, with codecs.conf `genericplc` and
  `genericplc_on_equal_codecs`: the jitter buffer turns a lost packet into an interpolation
  frame, and writing it to the Local channel in the bridge fills it by generic PLC (Asterisk
  applies PLC to frames written to a channel, never to what ReceiveFAX reads itself).

    sudo .venv/bin/python bench/fax_loss.py --runs 20 --variants default,v29
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.fax_pages import fax_tiff, make_pdf
from support.fax_sip import FIRST_RUN, FaxLine, caller, fax_line

from wildix_ast.asterisk import names


@dataclass(frozen=True)
class Variant:
    steps: tuple[str, ...] = ()
    #: JITTERBUFFER(...) value on the trunk channel, and the receive moved behind a Local
    #: channel with generic PLC; None: the receive runs on the trunk channel (the product)
    plc_jitterbuffer: str | None = None


V29 = ("Set(FAXOPT(maxrate)=9600)", "Set(FAXOPT(modems)=v27,v29)")
VARIANTS = {
    "default": Variant(),
    "v29": Variant(V29),
    "v27": Variant(("Set(FAXOPT(maxrate)=4800)", "Set(FAXOPT(modems)=v27)")),
    "no-ecm": Variant(("Set(FAXOPT(ecm)=no)",)),
    "v29-no-ecm": Variant(("Set(FAXOPT(ecm)=no)", *V29)),
    "v27-no-ecm": Variant(("Set(FAXOPT(ecm)=no)", "Set(FAXOPT(maxrate)=4800)",
                           "Set(FAXOPT(modems)=v27)")),
    "plc": Variant(plc_jitterbuffer="fixed,200"),
}
PLC_CONTEXT = "bench-fax-plc"
LOG_CHANNEL = "bench-fax-t30.log"
_SESSION = re.compile(r"FAX\[\d+\]\[(C-[0-9a-f]+)\] res_fax\.c: (.*)")


@dataclass
class Trace:
    """What the T.30 traces of a variant's receptions show."""

    sessions: int = 0
    trainings_ok: int = 0
    trainings_failed: int = 0
    dcs_while_waiting_for_tcf: int = 0
    t4_expired: int = 0
    bad_crc: int = 0
    ecm_frames: int = 0
    partial_page_requests: int = 0


@dataclass
class Result:
    variant: str
    faxes: int
    complete: int
    seconds: float
    dropped: int
    forwarded: int
    reasons: Counter[str] = field(default_factory=Counter)
    trace: Trace = field(default_factory=Trace)


def _edit_dialplan(text: str, variant: Variant) -> str:
    """The site's extensions.conf with the variant's changes to its fax receive context."""
    start = text.index(f"[{names.FAX_RECEIVE_CONTEXT}]\n")
    head, tail = text[:start], text[start:]
    if variant.steps:
        answer = re.search(r"^ same => n,Answer\(\)\n", tail, re.M)
        assert answer is not None, "no Answer() in the fax receive context"
        added = "".join(f" same => n,{step}\n" for step in variant.steps)
        tail = tail[:answer.start()] + added + tail[answer.start():]
    if variant.plc_jitterbuffer is not None:
        first = "exten => s,1,"
        assert first in tail
        tail = tail.replace(first, (
            f'{first}GotoIf($["${{BENCH_FAX_INNER}}" = "1"]?receive)\n'
            f" same => n,Set(JITTERBUFFER({variant.plc_jitterbuffer.split(',')[0]})="
            f"{','.join(variant.plc_jitterbuffer.split(',')[1:])})\n"
            f" same => n,Dial(Local/${{ARG1}}-${{ARG2}}@{PLC_CONTEXT}/n)\n"
            " same => n,Return()\n"
            " same => n(receive),"), 1)
        head += (f"[{PLC_CONTEXT}]\n"
                 "exten => _X.,1,Set(BENCH_FAX_INNER=1)\n"
                 f" same => n,Gosub({names.FAX_RECEIVE_CONTEXT},s,1("
                 "${CUT(EXTEN,-,1)},${CUT(EXTEN,-,2)}))\n"
                 " same => n,Hangup()\n\n")
    return head + tail


def _apply(line: FaxLine, variant: Variant) -> None:
    lab = line.site.lab
    if variant.plc_jitterbuffer is not None:
        (lab.etc_dir / "codecs.conf").write_text(
            "[plc]\ngenericplc = yes\ngenericplc_on_equal_codecs = yes\n")
        lab.cli("module reload plc")
        lab.cli("module load func_jitterbuffer.so")
    extensions = lab.etc_dir / "extensions.conf"
    extensions.write_text(_edit_dialplan(extensions.read_text(), variant))
    lab.cli("dialplan reload")
    lab.cli("fax set debug on")
    lab.cli(f"logger add channel {LOG_CHANNEL} fax,notice,warning,error")


def read_trace(log: Path) -> Trace:
    sessions: dict[str, list[str]] = {}
    for row in log.read_text(errors="replace").splitlines():
        found = _SESSION.search(row)
        if found:
            sessions.setdefault(found[1], []).append(found[2])
    trace = Trace(sessions=len(sessions))
    for rows in sessions.values():
        text = "\n".join(rows)
        trace.trainings_ok += text.count("Training succeeded")
        trace.trainings_failed += text.count("Training failed")
        trace.dcs_while_waiting_for_tcf += text.count("Unexpected DCS frame in state 7")
        trace.t4_expired += text.count("T4 expired")
        trace.bad_crc += text.count("Bad HDLC CRC")
        trace.ecm_frames += text.count("Storing ECM frame")
        trace.partial_page_requests += text.count("Tx:  PPR")
    return trace


def measure(name: str, work: Path, runs: int, concurrency: int, pages: int, loss: float,
            jitter: float, seed: int) -> Result:
    variant = VARIANTS[name]
    with fax_line(work, seed=seed) as line:
        _apply(line, variant)
        original = make_pdf(work / "original.pdf", pages)
        host, inside = line.sender_path("bench.tif")
        fax_tiff(original, host)
        line.clear()
        relay = line.relays["g711"]
        relay.loss, relay.jitter = loss, jitter
        numbers = list(range(FIRST_RUN["g711"], FIRST_RUN["g711"] + runs))
        result = Result(name, runs, 0, 0.0, 0, 0)
        started = time.monotonic()
        for at in range(0, runs, concurrency):
            batch = numbers[at:at + concurrency]
            line.send(inside, "g711", batch)
            records = line.wait_records(batch, 90 + 25 * pages * len(batch))
            line.site.wait_no_channels(30)
            for run in batch:
                record = records.get(caller(run))
                if record and record["status"] == "SUCCESS" and record["pages"] == str(pages):
                    result.complete += 1
                else:
                    result.reasons[record["statusstr"] if record else "no record"] += 1
            print(f"  {name}: {result.complete}/{min(at + concurrency, runs)} complete",
                  flush=True)
        result.seconds = time.monotonic() - started
        totals = relay.totals()
        result.dropped = totals[("rtp", "dropped")]
        result.forwarded = totals[("rtp", "forwarded")]
        result.trace = read_trace(line.site.lab.log_dir / LOG_CHANNEL)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="faxes per variant")
    parser.add_argument("--pages", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--loss", type=float, default=0.01)
    parser.add_argument("--jitter", type=float, default=0.040, help="seconds")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--variants", default="default,v29",
                        help=f"comma-separated, of: {', '.join(VARIANTS)}")
    args = parser.parse_args()
    chosen = [v for v in args.variants.split(",") if v]
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(unknown)}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-fax-loss-") as work:
        for name in chosen:
            print(f"{name}: {args.runs} G.711 faxes of {args.pages} pages", flush=True)
            results.append(measure(name, Path(work) / name, args.runs, args.concurrency,
                                   args.pages, args.loss, args.jitter, args.seed))
    table = Table(title=f"G.711 fax through {args.loss:.0%} loss, 0-{args.jitter * 1000:.0f} ms "
                        f"jitter: receiving-side variants ({args.pages}-page faxes, "
                        f"{args.concurrency} at a time; lab, shared cores)")
    for column in ("variant", "faxes", "complete", "vs default", "failures", "trainings ok",
                   "trainings failed", "DCS while waiting for TCF", "T4 expired",
                   "bad CRC", "PPR", "dropped / forwarded", "seconds"):
        table.add_column(column)
    base = next((r.complete for r in results if r.variant == "default"), 0)
    for r in results:
        t = r.trace
        table.add_row(r.variant, str(r.faxes), str(r.complete),
                      f"{r.complete / base:.2f}x" if base else "-",
                      "; ".join(f"{n} {why}" for why, n in r.reasons.most_common()) or "-",
                      str(t.trainings_ok), str(t.trainings_failed),
                      str(t.dcs_while_waiting_for_tcf), str(t.t4_expired), str(t.bad_crc),
                      str(t.partial_page_requests), f"{r.dropped} / {r.forwarded}",
                      f"{r.seconds:.0f}")
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
