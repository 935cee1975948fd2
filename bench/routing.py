"""Outgoing routing under load: calls through the `users` procedure's generated routing
(internal numbers first, then ~50 classification patterns, the caller's ACL group, the
class limit, the trunk group) against the same calls through a one-line static route
(`exten => _0X.,1,Dial(PJSIP/${EXTEN}@provider)`) on a bare Asterisk, in the same run.

SIPp plays phone 101 (digest auth) placing `--calls` calls at `--rate` calls/s to a national
number, each held `--hold` s; a SIPp UAS on 127.0.0.2 plays the provider and answers every
call. Per Asterisk: completed calls/s, failed calls, post-dial delay p50/p99 (INVITE to the
first 180, through Asterisk to the provider and back); completed calls/s is the calls
answered over the time from the first INVITE to the last 200 OK. Also the DNS look-ups
Asterisk made
(each lab resolves through a counting DNS server of its own).

    .venv/bin/python bench/routing.py [--rate 50] [--calls 500] [--hold 1]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bare_asterisk import write_bare_config
from support.dns_counter import DnsCounter

from wildix_ast.apply.pipeline import compile_site, install_stored_site
from wildix_ast.lab.allocator import free_port
from wildix_ast.lab.instance import Lab
from wildix_ast.lab.rootfs import ensure_rootfs
from wildix_ast.lab.sipp import SippDriver
from wildix_ast.lab.sipp.processes import UasHandle
from wildix_ast.lab.sipp.results import LoadResult
from wildix_ast.model.call_classes import CallClass, DialplanGeneral, NumberRule
from wildix_ast.model.settings_file import load_site
from wildix_ast.model.site import Site
from wildix_ast.model.trunks import Trunk, TrunkGroup
from wildix_ast.store import open_store

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "site.yaml"
CALLER = "101"
NUMBER = "0145678901"  # national: +33145678901 on the trunk
PROVIDER = "127.0.0.2"
C = CallClass
#: France's table split finer (one rule per leading digit), so the `users` procedure
#: carries about 50 patterns: each rule is matched in three forms (0..., 0033..., +33...).
RULES = [("1XXXXXXXX", C.LOCAL), ("2XXXXXXXX", C.NATIONAL), ("3XXXXXXXX", C.NATIONAL),
         ("4XXXXXXXX", C.NATIONAL), ("5XXXXXXXX", C.NATIONAL), ("6XXXXXXXX", C.MOBILE),
         ("7XXXXXXXX", C.MOBILE), ("8XXXXXXXX", C.PREMIUM), ("9XXXXXXXX", C.NATIONAL)]


@dataclass
class Row:
    target: str
    patterns: int
    calls: int
    connected: int
    failed: int
    seconds: float
    pdd_p50_ms: float | None
    pdd_p99_ms: float | None
    dns_queries: list[str]

    @property
    def completed_per_second(self) -> float:
        return self.connected / self.seconds if self.seconds else 0.0


def routing_site(provider_port: int) -> Site:
    base = load_site(EXAMPLE)
    general = DialplanGeneral(
        trunk_group="provider",
        number_rules=[NumberRule(pattern=p, call_class=c) for p, c in RULES])
    trunk = Trunk(name="provider", auth="ip", host=PROVIDER, port=provider_port,
                  max_calls=10_000)
    return Site.model_validate({
        **base.model_dump(exclude={"trunks", "trunk_groups", "dialplan"}),
        "dialplan": base.dialplan.model_copy(update={"general": general}).model_dump(),
        "trunks": [trunk.model_dump()],
        "trunk_groups": [TrunkGroup(name="provider", trunks=["provider"]).model_dump()],
    })


def patterns(extensions_conf: str, contexts: tuple[str, ...]) -> int:
    """The `exten =>` heads (first priorities) of `contexts`: what a dialled number is
    matched against."""
    count, current = 0, ""
    for line in extensions_conf.splitlines():
        header = re.match(r"^\[([^\]]+)\]", line)
        if header:
            current = header.group(1)
        elif current in contexts and re.match(r"^exten => [^,]+,1,", line):
            count += 1
    return count


@dataclass
class Running:
    name: str
    lab: Lab
    password: str
    patterns: int
    dns: DnsCounter


@contextmanager
def site_asterisk(work: Path, provider_port: int, dns: DnsCounter) -> Iterator[Running]:
    site = routing_site(provider_port)
    store = open_store(str(work / "store.sqlite3"))
    store.import_site(site)
    lab = Lab("bench-routing", work, nameserver=dns.address)
    compiled = compile_site(site, store, lab.target())
    install_stored_site(store, lab.target())
    caller = next(u for u in compiled.site.users if u.extension == CALLER)
    assert caller.sip_password is not None
    count = patterns(compiled.files["extensions.conf"],
                     ("proc-users", "wildix-extensions", "wildix-outgoing"))
    lab.start(timeout=60)
    try:
        yield Running("wildix-ast routing", lab, caller.sip_password, count, dns)
    finally:
        lab.stop()
        store.close()


PROVIDER_ENDPOINT = """
[provider]
type = endpoint
context = bare
disallow = all
allow = ulaw,alaw
aors = provider
direct_media = no

[provider]
type = aor
contact = sip:{host}:{port}
"""


@contextmanager
def static_asterisk(work: Path, provider_port: int, dns: DnsCounter) -> Iterator[Running]:
    lab = Lab("bench-static", work, nameserver=dns.address)
    password = "Static#Caller-101x"
    write_bare_config(lab, {CALLER: password}, "unused")
    pjsip = lab.etc_dir / "pjsip.conf"
    pjsip.write_text(pjsip.read_text() + PROVIDER_ENDPOINT.format(host=PROVIDER,
                                                                  port=provider_port))
    (lab.etc_dir / "extensions.conf").write_text(
        "[bare]\nexten => _0X.,1,Dial(PJSIP/${EXTEN}@provider)\n")
    lab.start(timeout=60)
    try:
        yield Running("static route", lab, password, 1, dns)
    finally:
        lab.stop()


def channels(lab: Lab) -> int:
    match = re.search(r"(\d+) active channels?", lab.cli("core show channels count"))
    return int(match.group(1)) if match else -1


def answer_window(result: LoadResult) -> float:
    """Seconds from the first INVITE sent to the last 200 OK received for one: the time the
    calls took to be placed and answered (the hold and the hang-ups left out)."""
    sent = [m.time for m in result.run.messages if m.method == "INVITE" and m.time is not None
            and m.direction == "sent" and not m.is_response]
    answered = [m.time for m in result.run.messages if m.method == "INVITE"
                and m.time is not None and m.direction == "received" and m.status == 200]
    return max(answered) - min(sent) if sent and answered else 0.0


def run(target: Running, rate: float, calls: int, hold: float, work: Path) -> Row:
    driver = SippDriver(target.lab.ports.sip, work_dir=work / f"sipp-{target.lab.name}")
    queries_before = target.dns.count()
    result = driver.call_load(CALLER, target.password, NUMBER, calls=calls, rate=rate,
                              limit=max(10, round(rate * (hold + 1) * 2)),
                              hold_seconds=hold)
    seconds = answer_window(result)
    deadline = time.monotonic() + 15
    while channels(target.lab) != 0 and time.monotonic() < deadline:
        time.sleep(0.25)
    connected = result.connected or 0
    p50, p99 = (result.post_dial_delay(p) for p in (50.0, 99.0))
    return Row(target.name, target.patterns, calls, connected,
               max(calls - connected, result.failed), seconds,
               None if p50 is None else p50 * 1000, None if p99 is None else p99 * 1000,
               target.dns.names()[queries_before:])


def table(rows: list[Row], rate: float, hold: float) -> Table:
    out = Table(title=f"Outgoing routing at {rate:g} calls/s, {hold:g} s calls: SIPp 101 -> "
                      f"{NUMBER} -> provider UAS")
    for column in ("route", "patterns", "calls", "connected", "failed", "completed/s",
                   "PDD p50 ms", "PDD p99 ms", "DNS queries", "seconds"):
        out.add_column(column, justify="left" if column == "route" else "right")
    for r in rows:
        out.add_row(r.target, str(r.patterns), str(r.calls), str(r.connected), str(r.failed),
                    f"{r.completed_per_second:.1f}", _ms(r.pdd_p50_ms), _ms(r.pdd_p99_ms),
                    str(len(r.dns_queries)), f"{r.seconds:.1f}")
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="calls per second (50)")
    parser.add_argument("--calls", type=int, default=500, help="calls per route (500)")
    parser.add_argument("--hold", type=float, default=1.0, help="seconds each call is held")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs per route, alternating (2)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the labs' logs and SIPp traces in DIR")
    args = parser.parse_args()
    console = Console(width=140)
    ensure_rootfs()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="wildix-routing-") as tmp, ExitStack() as stack:
        work = args.keep or Path(tmp)
        port = free_port(PROVIDER)
        provider_driver = SippDriver(5060, server_host=PROVIDER, local_ip=PROVIDER,
                                     work_dir=work / "provider")
        provider: UasHandle = provider_driver.answer("provider", calls=0, port=port,
                                                     timeout=3600)
        stack.callback(provider.stop)
        site = stack.enter_context(site_asterisk(work, port, stack.enter_context(
            DnsCounter())))
        static = stack.enter_context(static_asterisk(work, port, stack.enter_context(
            DnsCounter())))
        for _ in range(args.rounds):
            for target in (site, static):
                row = run(target, args.rate, args.calls, args.hold, work)
                rows.append(row)
                console.print(f"{row.target}: {row.connected}/{row.calls} connected, "
                              f"{row.failed} failed, {row.completed_per_second:.1f} calls/s")
    console.print(table(rows, args.rate, args.hold))
    ours = [r for r in rows if r.target == "wildix-ast routing"]
    theirs = [r for r in rows if r.target == "static route"]
    ratio = (sum(r.completed_per_second for r in ours) / len(ours)) / \
        (sum(r.completed_per_second for r in theirs) / len(theirs))
    failed = sum(r.failed for r in rows)

    def median_pdd(selected: list[Row]) -> float:
        values = sorted(r.pdd_p50_ms for r in selected if r.pdd_p50_ms is not None)
        return values[len(values) // 2] if values else float("nan")

    console.print(f"post-dial delay p50 (median of runs): routing {median_pdd(ours):.1f} ms, "
                  f"static {median_pdd(theirs):.1f} ms")
    dns = sorted({q for r in rows for q in r.dns_queries})
    console.print(f"completed calls/s, routing / static: {ratio:.2f} (target >= 0.9); "
                  f"failed calls: {failed} (target 0); DNS names looked up on the call path: "
                  f"{', '.join(dns) or 'none'}")


if __name__ == "__main__":
    main()
