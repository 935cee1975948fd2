"""Mail2Fax against a real IMAP/POP3 server (Debian's dovecot, started on loopback by the
test): issue 20 must-show 3, the IMAP part. Mails are polled by the real CLI process, which
is SIGKILLed at each step of taking a mail (`WILDIX_AST_CRASH_AT`) and whose IMAP
connection is cut mid-run (dovecot stopped and started again): every mail becomes exactly
one job — 0 duplicates, 0 lost — and the mailbox ends empty. Also: the server unreachable
or its certificate untrusted is a clear error with its exit code, never a traceback; POP3
with keep-on-server takes each mail once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli_run import assert_no_traceback, run
from support.dovecot_server import DovecotServer
from support.fax_pages import make_pdf
from support.live_site import example_site
from unit.test_mail2fax import BRUNO, PROTECTION, mail

from wildix_ast.model.mail2fax import Mail2FaxProfile
from wildix_ast.store import open_store
from wildix_ast.store.vault import with_secrets

pytestmark = pytest.mark.slow

MAILS = 14


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    server = DovecotServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


def _store(tmp_path: Path, **profile: object) -> str:
    site = example_site().model_copy(update={"mail2fax_profiles": [
        Mail2FaxProfile.model_validate({**profile, "protection_password": PROTECTION})]})
    db = str(tmp_path / "m2f.sqlite3")
    with open_store(db) as store:
        store.import_site(site)
        with_secrets(site, store)
    return db


def _poll(tmp_path: Path, db: str, *extra: str, crash: str | None = None
          ) -> subprocess.CompletedProcess[str]:
    env = {"WILDIX_AST_CRASH_AT": crash} if crash else {}
    return run("fax", "poll", "--json", "--db", db, "--jobs", str(tmp_path / "jobs"),
               "--queue", str(tmp_path / "queue"), *extra, env=env)


def _jobs(tmp_path: Path) -> list[dict[str, object]]:
    shown = run("fax", "jobs", "--json", "--jobs", str(tmp_path / "jobs"))
    assert shown.returncode == 0, shown.stderr
    jobs = json.loads(shown.stdout)["jobs"]
    assert isinstance(jobs, list)
    return jobs


def test_imap_cut_and_sigkill_mid_run_give_0_duplicates_and_0_lost(
        dovecot: DovecotServer, tmp_path: Path) -> None:
    db = _store(tmp_path, **dovecot.profile())
    pdf = make_pdf(tmp_path / "one.pdf", 1).read_bytes()
    ids = []
    for n in range(MAILS):
        raw = mail(BRUNO, f"0140000190 {PROTECTION}", [("invoice.pdf", "application/pdf",
                                                         pdf)], body=f"Invoice {n}\n")
        ids.append(raw.split(b"Message-ID: ", 1)[1].split(b"\n", 1)[0].strip().decode())
        dovecot.append(raw)
    started = time.monotonic()
    # a SIGKILL at each step of taking a mail: after its job is synced and before the mail
    # is acknowledged, and before its job is written
    for crash in ("fax-out-before-acknowledge", "fax-out-before-job",
                  "fax-out-before-acknowledge"):
        killed = _poll(tmp_path, db, crash=crash)
        assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    # a poll whose IMAP connection is cut while it reads (its session process killed)
    process = subprocess.Popen(
        [sys.executable, "-m", "wildix_ast", "fax", "poll", "--json", "--db", db,
         "--jobs", str(tmp_path / "jobs"), "--queue", str(tmp_path / "queue")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "NO_COLOR": "1"})
    deadline = time.monotonic() + 60
    while len(list((tmp_path / "jobs").glob("*.json"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    sessions = dovecot.cut_connections()
    out, err = process.communicate(timeout=60)
    assert "Traceback" not in out + err
    cut = process.returncode
    jobs_after_cut = len(_jobs(tmp_path))
    # and dovecot stopped and started again (every connection gone, the same ports)
    dovecot.stop()
    dovecot.start()
    # and polls until the mailbox is empty
    for _ in range(4):
        done = _poll(tmp_path, db)
        assert_no_traceback(done)
        assert done.returncode == 0, done.stderr
        if not dovecot.inbox():
            break
    elapsed = time.monotonic() - started
    jobs = _jobs(tmp_path)
    message_ids = sorted(str(j["message_id"]) for j in jobs)
    print(f"{MAILS} mails, 3 SIGKILLs and one IMAP cut of {sessions} session(s) (poll exit "
          f"{cut}, {jobs_after_cut} "
          f"jobs when cut): {len(jobs)} jobs, {len(set(message_ids))} distinct, "
          f"{elapsed:.1f} s (2 shared cores, under load)")
    assert message_ids == sorted(ids)                       # 0 lost, 0 duplicates
    assert all(j["state"] == "queued" and j["pages"] == 1 for j in jobs), jobs
    assert dovecot.inbox() == []                            # every mail acknowledged
    assert sessions >= 1 and cut == 11, (sessions, cut, err)   # cut mid-run: exit 11
    assert "connection broken" in err, err
    assert jobs_after_cut < MAILS
    queued = list((tmp_path / "queue").rglob("*.json")) if (tmp_path / "queue").exists() \
        else []
    assert queued == []                                     # no refusal, no report


def test_an_unreachable_or_untrusted_server_is_a_clear_error(
        dovecot: DovecotServer, tmp_path: Path) -> None:
    untrusted = _store(tmp_path, **{**dovecot.profile(), "ca_file": None})
    result = _poll(tmp_path, untrusted)
    assert_no_traceback(result)
    assert result.returncode == 12 and "TLS" in result.stderr, result.stderr
    dovecot.stop()
    gone = _store(tmp_path / "b", **dovecot.profile())
    result = _poll(tmp_path / "b", gone)
    assert_no_traceback(result)
    assert result.returncode == 11 and "cannot connect" in result.stderr, result.stderr
    dovecot.start()


def test_a_wrong_mailbox_password_is_exit_13(dovecot: DovecotServer, tmp_path: Path) -> None:
    db = _store(tmp_path, **{**dovecot.profile(), "password": "wrong-password"})
    result = _poll(tmp_path, db)
    assert_no_traceback(result)
    assert result.returncode == 13 and "login refused" in result.stderr, result.stderr


def test_pop3_with_starttls_and_keep_on_server_takes_each_mail_once(
        dovecot: DovecotServer, tmp_path: Path) -> None:
    db = _store(tmp_path, **dovecot.profile(protocol="pop3", security="starttls",
                                            port=dovecot.ports["pop3"],
                                            keep_on_server=True))
    pdf = make_pdf(tmp_path / "one.pdf", 1).read_bytes()
    for n in range(2):
        dovecot.append(mail(BRUNO, f"0140000190 {PROTECTION}",
                            [("a.pdf", "application/pdf", pdf)], body=f"n{n}\n"))
    for _ in range(2):
        result = _poll(tmp_path, db)
        assert result.returncode == 0, result.stderr
    mails = json.loads(result.stdout)["mails"]
    assert [m["new"] for m in mails] == [False, False]      # the second poll: taken before
    assert len(_jobs(tmp_path)) == 2
    assert len(dovecot.inbox()) == 2                        # kept on the server


def test_poll_serve_takes_mails_as_they_come_and_stops_on_sigterm(
        dovecot: DovecotServer, tmp_path: Path) -> None:
    db = _store(tmp_path, **dovecot.profile())
    pdf = make_pdf(tmp_path / "one.pdf", 1).read_bytes()
    process = subprocess.Popen(
        [sys.executable, "-m", "wildix_ast", "fax", "poll", "--serve", "--interval", "0.3",
         "--json", "--db", db, "--jobs", str(tmp_path / "jobs"), "--queue",
         str(tmp_path / "queue")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "NO_COLOR": "1"})
    try:
        for n in range(2):
            dovecot.append(mail(BRUNO, f"0140000190 {PROTECTION}",
                                [("a.pdf", "application/pdf", pdf)], body=f"n{n}\n"))
            deadline = time.monotonic() + 60
            while len(list((tmp_path / "jobs").glob("*.json"))) <= n and \
                    time.monotonic() < deadline:
                time.sleep(0.1)
        # the server going away is logged and the loop goes on
        dovecot.stop()
        time.sleep(1.0)
        dovecot.start()
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in out + err
    assert len(_jobs(tmp_path)) == 2 and dovecot.inbox() == []
