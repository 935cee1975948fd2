"""Issue 20, fax over real SIP (docs/fax.md "Transport"): a second, plain lab Asterisk sends
faxes (SendFax on a PJSIP channel) through `MediaRelay` to the site's lab Asterisk, whose
trunks `faxt38` (`fax: t38`) and `faxg711` (`fax: g711`) are rendered from the settings;
the fax DID's call reaches ReceiveFax, the Fax2Mail path.

- must-show 1, transport half: a 10-page PDF (ghostscript -> G4 TIFF) over G.711 and over
  T.38 at once, through the relay with 40 ms jitter and no loss, received, collected, mailed
  to a real SMTP server; each mailed PDF has 10 pages equal to the original's rendering:
  rendered at 50 dpi to 8-bit grey, each page differs from its original by a mean of at most
  8/255 and by less than half its difference from any other original page.
- must-show 2, CI size (4 faxes of 2 pages per transport, not 20: `bench/fax.py --runs 20`
  is the full table): through 1 % seeded loss and 0-40 ms jitter, every T.38 fax completes
  with all its pages, and UDPTL datagrams crossed the relay for each T.38 call (T.38 really
  negotiated, not a fall-back to audio). G.711 under the same loss is a known failure
  (xfail, strict: it fails today; see docs/fax.md, "G.711 under loss": a lost packet breaks
  the modems' training, and spandsp's receiver ends the call on the repeated DCS; no
  receiving-side setting measured by bench/fax_loss.py gets near 19 of 20).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table
from support.cli_run import assert_no_traceback, run
from support.fax_pages import assert_same_pages, fax_tiff, make_pdf, render
from support.fax_sip import FIRST_RUN, FaxLine, caller, fax_line
from support.smtp_server import SmtpServer

from wildix_ast.model.fax_server import FaxServer
from wildix_ast.model.smtp_client import SmtpProfile
from wildix_ast.store import open_store
from wildix_ast.store.vault import with_secrets

DPI = 50
MAX_MEAN_DIFFERENCE = 8.0
CI_RUNS = 4
CI_PAGES = 2
TRANSPORTS = ("g711", "t38")


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaxLine]:
    with fax_line(tmp_path_factory.mktemp("faxsip")) as running:
        yield running


def _impair(line: FaxLine, loss: float, jitter: float) -> None:
    for relay in line.relays.values():
        relay.loss, relay.jitter = loss, jitter


def _send_all(line: FaxLine, tmp_path: Path, pages: int, runs: int,
              ) -> tuple[Path, dict[str, list[int]], dict[str, dict[str, str]], float]:
    """Send `runs` faxes of `pages` pages over each transport at once; wait for the site's
    records. (original PDF, runs per transport, records by caller, seconds)."""
    original = make_pdf(tmp_path / "original.pdf", pages)
    host, inside = line.sender_path(f"send-{pages}.tif")
    fax_tiff(original, host)
    line.clear()
    for relay in line.relays.values():
        relay.reset_stats()  # the table counts this batch's datagrams only
    numbered = {fax: list(range(FIRST_RUN[fax], FIRST_RUN[fax] + runs)) for fax in TRANSPORTS}
    started = time.monotonic()
    for fax in TRANSPORTS:
        line.send(inside, fax, numbered[fax])
    every = [r for runs_of in numbered.values() for r in runs_of]
    records = line.wait_records(every, 60 + 20 * pages * runs)
    elapsed = time.monotonic() - started
    assert line.site.wait_no_channels(30) == 0
    return original, numbered, records, elapsed


def _table(title: str, numbered: dict[str, list[int]], records: dict[str, dict[str, str]],
           pages: int, line: FaxLine) -> dict[str, int]:
    """Print one row per transport; faxes complete with all pages, per transport."""
    table = Table(title=title)
    for column in ("transport", "faxes", "complete", "failed", "failures",
                   "media forwarded", "media dropped", "UDPTL forwarded"):
        table.add_column(column)
    complete: dict[str, int] = {}
    for fax, runs in numbered.items():
        got = [records.get(caller(r)) for r in runs]
        ok = [g for g in got if g and g["status"] == "SUCCESS" and g["pages"] == str(pages)]
        complete[fax] = len(ok)
        reasons = sorted({g["statusstr"] if g else "no record" for g in got if g not in ok})
        totals = line.relays[fax].totals()
        kind = "udptl" if fax == "t38" else "rtp"
        table.add_row(fax, str(len(runs)), str(len(ok)), str(len(runs) - len(ok)),
                      "; ".join(reasons) or "-",
                      str(totals[(kind, "forwarded")] + totals[("rtp", "forwarded")]
                          if kind == "udptl" else totals[("rtp", "forwarded")]),
                      str(totals[("rtp", "dropped")] + totals[("udptl", "dropped")]),
                      str(totals[("udptl", "forwarded")]))
    Console(width=140).print(table)
    return complete


def _udptl_calls(line: FaxLine) -> int:
    relay = line.relays["t38"]
    return sum(1 for call in relay.calls() if relay.call_counts(call)[("udptl", "forwarded")])


def test_a_10_page_pdf_over_g711_and_over_t38_arrives_by_mail_as_the_same_10_pages(
        line: FaxLine, tmp_path: Path) -> None:
    pages = 10
    _impair(line, loss=0.0, jitter=0.040)
    original, numbered, records, elapsed = _send_all(line, tmp_path, pages, 1)
    print(f"10-page faxes over G.711 and T.38 at once: {elapsed:.0f} s")
    complete = _table("10 pages, 40 ms jitter, no loss", numbered, records, pages, line)
    assert complete == {"g711": 1, "t38": 1}, records
    assert _udptl_calls(line) == 1  # the T.38 fax crossed the relay as UDPTL

    smtp = SmtpServer(tmp_path)
    smtp.start()
    try:
        site = line.site.compiled.site.model_copy(update={
            "smtp_profiles": [SmtpProfile(**smtp.profile())],
            "fax_server": FaxServer(copy_address=None)})
        db = str(tmp_path / "mail.sqlite3")
        with open_store(db) as store:
            store.import_site(site)
            with_secrets(site, store)
        queue = str(tmp_path / "queue")
        collected = run("fax", "collect", "--json", "--spool", str(line.spool), "--db", db,
                        "--queue", queue)
        assert_no_traceback(collected)
        assert collected.returncode == 0, collected.stderr
        sent = run("mail", "send", "--json", "--queue", queue, "--db", db)
        assert_no_traceback(sent)
        assert sent.returncode == 0, sent.stderr
        mails = smtp.messages()
    finally:
        smtp.stop()
    assert len(mails) == 2, [m.recipients for m in mails]
    want = render(original, tmp_path / "want", DPI)
    assert len(want) == pages
    for fax in TRANSPORTS:
        number = caller(numbered[fax][0])
        (mail,) = [m for m in mails if number in str(m.message["Subject"])]
        (attachment,) = mail.message.iter_attachments()
        received = tmp_path / f"{fax}.pdf"
        received.write_bytes(attachment.get_content())
        assert_same_pages(received, want, tmp_path / f"got-{fax}", DPI, MAX_MEAN_DIFFERENCE,
                          fax)


@pytest.fixture(scope="module")
def lossy_runs(line: FaxLine, tmp_path_factory: pytest.TempPathFactory,
               ) -> tuple[dict[str, int], int]:
    """CI size of must-show 2: CI_RUNS faxes of CI_PAGES pages per transport, all at once,
    through 1 % loss and 0-40 ms jitter; (complete per transport, T.38 calls with UDPTL)."""
    _impair(line, loss=0.01, jitter=0.040)
    _, numbered, records, elapsed = _send_all(line, tmp_path_factory.mktemp("lossy"),
                                              CI_PAGES, CI_RUNS)
    print(f"{CI_RUNS} faxes per transport at once: {elapsed:.0f} s")
    complete = _table(f"{CI_RUNS} faxes of {CI_PAGES} pages per transport, 1 % loss, "
                      "0-40 ms jitter", numbered, records, CI_PAGES, line)
    return complete, _udptl_calls(line)


def test_4_t38_faxes_of_4_through_1_percent_loss_and_40_ms_jitter_complete_with_all_pages(
        lossy_runs: tuple[dict[str, int], int]) -> None:
    complete, udptl_calls = lossy_runs
    assert complete["t38"] == CI_RUNS
    assert udptl_calls == CI_RUNS  # every T.38 call's pages crossed the relay as UDPTL


@pytest.mark.xfail(strict=True, reason="G.711 fax through 1 % loss: a lost packet's 20 ms "
                   "vanish from what spandsp demodulates, V.17/V.29 training fails and T.30 "
                   "ends with DCN; no receiving-side setting tried reaches 19 of 20 "
                   "(docs/fax.md, 'G.711 under loss'; bench/fax_loss.py)")
def test_g711_faxes_through_1_percent_loss_complete_19_of_20_4_in_ci(
        lossy_runs: tuple[dict[str, int], int]) -> None:
    complete, _ = lossy_runs
    assert complete["g711"] >= math.ceil(CI_RUNS * 19 / 20)  # 19/20 of 4: all 4
