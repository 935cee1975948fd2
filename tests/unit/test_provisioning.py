"""The provisioning server's decisions and files, against a real SQLite store: each vendor's
file holds the line and the device settings (and no secret for an unassigned phone); a
scanner is refused and banned at the threshold; a phone proves itself with its own link's
credential (the old one refused after a reset); enrolment only in an open window."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from wildix_ast.errors import RenderError
from wildix_ast.model.devices import Device, Vendor
from wildix_ast.model.settings_file import parse_site
from wildix_ast.services.provisioning import server
from wildix_ast.services.provisioning.files import (
    FileKind,
    is_common_file,
    parse_file_name,
    vendor_by_oui,
)
from wildix_ast.services.provisioning.guard import Guard
from wildix_ast.services.provisioning.render import (
    Line,
    SiteFacts,
    render_configuration,
    render_device_configuration,
    sip_password_of,
)
from wildix_ast.services.provisioning.server import (
    Provisioner,
    ProvisioningServerConfig,
    _shown,
)
from wildix_ast.store import open_store
from wildix_ast.store.devices import add_device, assign, reset_credential
from wildix_ast.store.provisioning import close_enrolment, device_with_hash, open_enrolment
from wildix_ast.store.store import Store
from wildix_ast.store.vault import with_secrets

SITE = """
system:
  language_region: {timezone: Europe/Paris}
users:
  - {name: Ann & Co, extension: "101"}
  - {name: Ben, extension: "102"}
provisioning:
  address: pbx.example.org
  voice_vlan: 20
  voice_cos: 5
  data_vlan: 30
  data_cos: 1
  ntp_server: ntp.example.org
  dns_primary: 192.0.2.53
  dns_secondary: 192.0.2.54
"""

MACS = {Vendor.YEALINK: "001565abcdef", Vendor.SNOM: "000413abcdef",
        Vendor.GRANDSTREAM: "000b82abcdef", Vendor.POLYCOM: "0004f2abcdef"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(str(tmp_path / "store.sqlite3")) as opened:
        site = parse_site(SITE)
        with_secrets(site, opened)  # the users' SIP passwords, generated and kept
        opened.import_site(site)
        yield opened


def _facts(store: Store) -> SiteFacts:
    return SiteFacts.of(store.export_site())


def test_file_names_of_each_vendor() -> None:
    assert parse_file_name("001565ABCDEF.cfg").mac == "001565abcdef"  # type: ignore[union-attr]
    assert parse_file_name("0004f2abcdef-phone.cfg").kind is FileKind.PHONE  # type: ignore[union-attr]
    assert parse_file_name("cfg000b82abcdef.xml").vendors == (Vendor.GRANDSTREAM,)  # type: ignore[union-attr]
    assert parse_file_name("snomD785-000413ABCDEF.htm").vendors == (Vendor.SNOM,)  # type: ignore[union-attr]
    for name in ("../etc/passwd", "001565abcdef.cfg.bak", "x.cfg", "001565abcdeg.cfg"):
        assert parse_file_name(name) is None
    assert is_common_file("y000000000044.cfg") and is_common_file("000000000000.cfg")
    assert not is_common_file("001565abcdef.cfg")
    assert vendor_by_oui("001565000001") is Vendor.YEALINK
    assert vendor_by_oui("00aabbccddee") is None


@pytest.mark.parametrize("vendor", list(Vendor))
def test_each_vendor_file_has_the_line_and_the_device_settings(store: Store,
                                                               vendor: Vendor) -> None:
    mac = MACS[vendor]
    device = Device(mac=mac, vendor=vendor, extension="101")
    add_device(store, device)
    kind = FileKind.PHONE if vendor is Vendor.POLYCOM else FileKind.MAIN
    user = store.user_by_extension("101")
    assert user is not None
    password = sip_password_of(store, user)
    assert password
    done = render_device_configuration(store, device, kind=kind,
                                       provisioning_url="https://pbx.example.org:8443/p/X/")
    text = done.body.decode()
    for expected in (password, "pbx.example.org", "101", "20", "ntp.example.org",
                     "192.0.2.53" if vendor is not Vendor.GRANDSTREAM else "<P92>192</P92>",
                     "pbx.example.org:8443/p/X/"):
        assert expected in text, (vendor, expected, text)
    if done.content_type == "application/xml":
        root = ET.fromstring(done.body)  # well-formed, the '&' of the name escaped
        assert "Ann & Co" in ET.tostring(root, encoding="unicode").replace("&amp;", "&")
    else:
        assert "account.1.display_name = Ann & Co" in text
        assert "local_time.time_zone = +1" in text
    if vendor is Vendor.GRANDSTREAM:
        assert "<P246>CET-1CEST,M3.5.0,M10.5.0/3</P246>" in text
    if vendor is Vendor.POLYCOM:
        master = render_device_configuration(store, device).body.decode()
        assert f'CONFIG_FILES="{mac}-phone.cfg"' in master and password not in master
    # unassigned: the same settings, no line, no secret
    bare = render_configuration(_facts(store), Device(mac=mac, vendor=vendor), None, None,
                                kind).body.decode()
    assert password not in bare and "ntp.example.org" in bare


def test_a_value_with_a_line_break_is_refused(store: Store) -> None:
    line = Line(1, "101", "101", "pw\nstatic.network.primary_dns = 6.6.6.6", "Ann",
                "pbx", 5060, _facts(store).provisioning.sip_transport)
    with pytest.raises(RenderError, match="control character"):
        render_configuration(_facts(store), Device(mac=MACS[Vendor.YEALINK],
                                                   vendor=Vendor.YEALINK), line, None)


def test_templates_are_overridden_by_a_folder(store: Store, tmp_path: Path) -> None:
    (tmp_path / "over").mkdir()
    (tmp_path / "over" / "yealink.cfg.j2").write_text("custom {{ mac }}\n")
    device = Device(mac=MACS[Vendor.YEALINK], vendor=Vendor.YEALINK)
    assert render_device_configuration(store, device, templates=tmp_path / "over").body \
        == b"custom 001565abcdef\n"


def _provisioner(store: Store, state: Path, threshold: int = 10) -> Provisioner:
    return Provisioner(ProvisioningServerConfig(store, "https://pbx.example.org:8443",
                                                Guard(state, threshold=threshold)))


def test_a_scanner_gets_no_secret_and_is_banned_at_the_threshold(store: Store,
                                                                 tmp_path: Path) -> None:
    real = Device(mac="001565000042", vendor=Vendor.YEALINK, extension="101")
    credential = add_device(store, real)
    provisioner = _provisioner(store, tmp_path / "runtime")
    scanner = "192.0.2.66"
    answers = []
    for n in range(40, 60):  # the real phone's MAC among them, with guessed credentials
        answers.append(provisioner.handle(f"/p/{'A' * 32}/001565{n:06x}.cfg", scanner))
        if provisioner.config.guard.banned(scanner):
            break
    assert len(answers) == 10 and all(a.status == 404 and a.rendered is None
                                      for a in answers)
    bans = json.loads((tmp_path / "runtime" / "bans.json").read_text())["bans"]
    assert [b["address"] for b in bans] == [scanner]
    assert bans[0]["reason"].startswith("provisioning:")
    # the real phone, from another address, still gets its file
    good = provisioner.handle(f"/p/{credential}/001565000042.cfg", "192.0.2.10",
                              "Yealink SIP-T54W 96.86.0.100 00:15:65:00:00:42")
    assert good.status == 200 and good.rendered is not None
    assert b"account.1.password = " in good.rendered.body
    provisioner.flush()  # fetches are written once a second
    found = device_with_hash(store, "001565000042")
    assert found is not None and found[0].ip == "192.0.2.10"
    assert found[0].model == "T54W" and found[0].firmware == "96.86.0.100"


def test_loopback_is_never_banned(store: Store, tmp_path: Path) -> None:
    provisioner = _provisioner(store, tmp_path / "runtime", threshold=2)
    for _ in range(5):
        provisioner.handle("/nothing", "127.0.0.1")
    assert not provisioner.config.guard.banned("127.0.0.1")


def test_the_old_credential_is_refused_after_a_reset(store: Store, tmp_path: Path) -> None:
    mac = MACS[Vendor.SNOM]
    old = add_device(store, Device(mac=mac, vendor=Vendor.SNOM, extension="102"))
    provisioner = _provisioner(store, tmp_path / "runtime")
    assert provisioner.handle(f"/p/{old}/{mac}.xml", "192.0.2.10").status == 200
    new = reset_credential(store, mac)
    refused = provisioner.handle(f"/p/{old}/{mac}.xml", "192.0.2.10")
    assert refused.status == 404 and refused.rendered is None
    assert refused.outcome == "refused: wrong credential"
    assert provisioner.handle(f"/p/{new}/{mac}.xml", "192.0.2.10").status == 200
    # a Yealink file name for a Snom phone is refused too
    assert provisioner.handle(f"/p/{new}/{mac}.cfg", "192.0.2.10").status == 404


def test_a_kept_file_is_never_served_after_the_store_changed(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files are kept in memory per device, credential and file, and dropped by any commit
    to the store: an assignment, an unassignment, a new SIP password, a reset credential
    are all seen by the next request."""
    # the server's own once-a-second fetch records are commits too: none during the test
    monkeypatch.setattr(server, "FLUSH_EVERY", 3600.0)
    mac = MACS[Vendor.YEALINK]
    credential = add_device(store, Device(mac=mac, vendor=Vendor.YEALINK, extension="101"))
    provisioner = _provisioner(store, tmp_path / "runtime")
    link = f"/p/{credential}/{mac}.cfg"

    def served() -> bytes:
        answer = provisioner.handle(link, "192.0.2.10")
        assert answer.status == 200 and answer.rendered is not None, answer
        return answer.rendered.body

    first = provisioner.handle(link, "192.0.2.10")
    assert provisioner.handle(link, "192.0.2.10") is first  # kept: no store read, no render
    assert b"account.1.user_name = 101" in served()
    assign(store, mac, "102")
    assert b"account.1.user_name = 102" in served()
    site = store.export_site()
    users = [u.model_copy(update={"sip_password": "Fresh#Secret2026x"})
             if u.extension == "102" else u for u in site.users]
    store.import_site(with_secrets(site.model_copy(update={"users": users}), store))
    assert b"account.1.password = Fresh#Secret2026x" in served()
    assign(store, mac, None)
    assert b"account.1.password" not in served()
    reset_credential(store, mac)
    assert provisioner.handle(link, "192.0.2.10").status == 404


def test_enrolment_only_in_an_open_window_and_once(store: Store, tmp_path: Path) -> None:
    provisioner = _provisioner(store, tmp_path / "runtime")
    mac = "000b82123456"
    assert provisioner.handle(f"/enrol/cfg{mac}.xml", "192.0.2.20").status == 404
    assert device_with_hash(store, mac) is None  # never auto-added outside a window
    open_enrolment(store, 5, (Vendor.GRANDSTREAM,))
    # another vendor's MAC, or a MAC of no phone vendor: refused
    assert provisioner.handle("/enrol/001565123456.cfg", "192.0.2.20").status == 404
    assert provisioner.handle("/enrol/cfg00aabbccddee.xml", "192.0.2.20").status == 404
    enrolled = provisioner.handle(f"/enrol/cfg{mac}.xml", "192.0.2.20")
    assert enrolled.status == 200 and enrolled.rendered is not None
    body = enrolled.rendered.body.decode()
    assert "<P34>" not in body  # unassigned: no SIP password
    link = body.split("<P237>")[1].split("</P237>")[0]
    assert link.startswith("pbx.example.org:8443/p/")
    credential = link.split("/")[2]
    # the second claim of the same MAC (an attacker racing the phone) is refused
    assert provisioner.handle(f"/enrol/cfg{mac}.xml", "192.0.2.21").status == 404
    # assigned by the admin: the phone's own link now carries its line
    assign(store, mac, "101")
    served = provisioner.handle(f"/p/{credential}/cfg{mac}.xml", "192.0.2.20")
    assert served.rendered is not None and b"<P34>" in served.rendered.body
    # one address enrols one phone: a second MAC from it is someone making them up
    bulk = provisioner.handle("/enrol/cfg000b82654320.xml", "192.0.2.20")
    assert bulk.status == 404 and device_with_hash(store, "000b82654320") is None
    close_enrolment(store)
    assert provisioner.handle("/enrol/cfg000b82654321.xml", "192.0.2.22").status == 404


def test_the_log_never_shows_a_credential() -> None:
    assert _shown("/p/secretsecretsecret123/001565abcdef.cfg") == \
        "/p/<credential>/001565abcdef.cfg"
    assert _shown("/p/x\r\nInjected: 1") == "/p/<credential>"
    assert "\n" not in _shown("/enrol/\nfoo")


def test_the_migration_hashes_credentials_kept_as_text(tmp_path: Path) -> None:
    """A store from before 0019 kept device credentials as text: after the migration only
    their hash is left, and the credential still opens the device's link."""
    import sqlite3

    from alembic import command
    from sqlalchemy import create_engine

    from wildix_ast.store.database import _alembic_config
    from wildix_ast.store.devices import credential_matches, provisioning_key

    path = tmp_path / "old.sqlite3"
    with open_store(str(path)) as fresh:
        fresh.import_site(parse_site(SITE))
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        command.downgrade(_alembic_config(connection), "0015")
    engine.dispose()
    mac, credential = "001565abcdef", "T" * 32
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO devices (mac, vendor, line, added_at) VALUES "
                   "(?, 'yealink', 1, '2026-01-01 00:00:00')", (mac,))
        db.execute("INSERT INTO secrets (key, value) VALUES (?, ?)",
                   (provisioning_key(mac), credential))
    with open_store(str(path)) as migrated:
        kept = migrated.get_secret(provisioning_key(mac))
        assert kept is not None and kept != credential and kept.startswith("h1:")
        assert credential_matches(mac, credential, kept)
        assert migrated.export_site().provisioning.port == 8443


def test_workers_share_one_miss_count_and_one_enrolment(tmp_path: Path) -> None:
    """Two workers' guards (each its own open file, as two processes have): a scanner whose
    misses alternate between them is banned at the 10th in total, and the second worker
    refuses it at once; an address enrols one phone across both."""
    from wildix_ast.services.provisioning.guard import MissBook

    state = tmp_path / "runtime"
    first, second = (Guard(state, threshold=10, book=MissBook(tmp_path / "counts.sqlite3"))
                     for _ in range(2))
    scanner = "192.0.2.66"
    bans = [(first if n % 2 else second).miss(scanner, "unknown MAC") for n in range(10)]
    assert bans[:9] == [None] * 9 and bans[9] is not None
    assert first.banned(scanner) and second.banned(scanner)
    assert json.loads((state / "bans.json").read_text())["bans"][0]["address"] == scanner
    # further misses (a kept-alive connection) ban nobody twice and count nothing
    assert second.miss(scanner, "unknown MAC") is None
    assert first.claim_enrolment("192.0.2.20", 1)
    assert not second.claim_enrolment("192.0.2.20", 1)
    second.release_enrolment("192.0.2.20")
    assert first.claim_enrolment("192.0.2.20", 1)


def test_the_shared_count_keeps_only_recent_misses(tmp_path: Path) -> None:
    """Misses older than the window are not counted (another worker's either), and a ban
    starts the address's count afresh."""
    from wildix_ast.services.provisioning.guard import MissBook

    now = [1000.0]
    guards = [Guard(None, threshold=3, window=60.0, clock=lambda: now[0],
                    book=MissBook(tmp_path / "counts.sqlite3")) for _ in range(2)]
    guards[0].miss("192.0.2.66", "x")
    guards[1].miss("192.0.2.66", "x")
    now[0] += 61  # both out of the window
    assert guards[0].miss("192.0.2.66", "x") is None
    assert guards[1].miss("192.0.2.66", "x") is None
    assert guards[0].miss("192.0.2.66", "x") is not None  # 3 within the window


@pytest.mark.slow
def test_forked_workers_missing_at_once_ban_after_ten_in_total(tmp_path: Path) -> None:
    """Four processes, each with its own guard on the shared count, miss at the same time
    from one address (3 each): exactly one ban, made at the 10th miss in total."""
    import multiprocessing

    from wildix_ast.services.provisioning.guard import MissBook

    state, book = tmp_path / "runtime", tmp_path / "counts.sqlite3"
    context = multiprocessing.get_context("fork")
    results = context.Queue()

    def worker() -> None:
        guard = Guard(state, threshold=10, book=MissBook(book))
        results.put([guard.miss("192.0.2.66", "unknown MAC") is not None for _ in range(3)])

    processes = [context.Process(target=worker) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    outcomes = [results.get(timeout=5) for _ in processes]
    assert sum(sum(made) for made in outcomes) == 1  # one ban, by whoever made the 10th
    bans = json.loads((state / "bans.json").read_text())["bans"]
    assert [b["address"] for b in bans] == ["192.0.2.66"] and bans[0]["attempts"] == 10


def _children(pid: int) -> set[int]:
    return {int(child) for task in Path(f"/proc/{pid}/task").glob("*")
            for child in (task / "children").read_text().split()}


@pytest.mark.slow
def test_the_server_with_two_workers_bans_restarts_and_stops(tmp_path: Path) -> None:
    """`provisioning serve --workers 2` as its own process: two workers; a scanner on a new
    connection per request (whichever worker takes it) gets at most 10 misses, then every
    connection closed unread; a worker killed is started again and the port still answers;
    SIGTERM stops them all."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = str(tmp_path / "store.sqlite3")
    with open_store(db) as opened:
        site = parse_site(SITE.replace("address: pbx.example.org",
                                       f"address: 127.0.0.1\n  port: {port}\n  allow_http: true"))
        opened.import_site(with_secrets(site, opened))
        credential = add_device(opened, Device(mac="001565000042", vendor=Vendor.YEALINK,
                                               extension="101"))
    state = tmp_path / "runtime"
    log_file = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "wildix_ast", "provisioning", "serve", "--host", "127.0.0.1",
         "--workers", "2", "--state-dir", str(state), "--db", db],
        stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})

    def get(path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as got:
                return int(got.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        deadline = time.monotonic() + 30
        while len(_children(process.pid)) < 2 and time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            time.sleep(0.1)
        workers = _children(process.pid)
        assert len(workers) == 2
        link = f"/p/{credential}/001565000042.cfg"
        assert get(link) == 200
        # its fetch is written within a second or two with no further request (the
        # worker that served it flushes from its accept loop)
        deadline = time.monotonic() + 10
        with open_store(db) as reader:
            while (found := device_with_hash(reader, "001565000042")) is not None \
                    and found[0].ip is None and time.monotonic() < deadline:
                time.sleep(0.2)
        assert found is not None and found[0].ip == "127.0.0.1"
        misses = 0
        for n in range(40):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                            source_address=("127.0.0.88", 0))
            with sock:
                sock.sendall(f"GET /p/{'A' * 32}/001565{n:06x}.cfg HTTP/1.1\r\nHost: x\r\n"
                             "Connection: close\r\n\r\n".encode())
                answer = sock.recv(100)
            if not answer:
                break
            assert answer.startswith(b"HTTP/1.1 404")
            misses += 1
        assert misses == 10
        assert "127.0.0.88" in json.loads((state / "bans.json").read_text())["bans"][0].values()
        os.kill(sorted(workers)[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while (len(_children(process.pid)) < 2 or _children(process.pid) == workers) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_children(process.pid)) == 2 and _children(process.pid) != workers
        assert all(get(link) == 200 for _ in range(10))
        workers = _children(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        log_file.close()
    for pid in workers:  # stopped with it, not left holding the port
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    log = (tmp_path / "server.log").read_text()
    assert "2 workers" in log and "starting it again" in log
    assert credential not in log


def test_the_http_parsing_keeps_alive_refuses_and_counts_malformed_requests(
        store: Store, tmp_path: Path) -> None:
    """The server's own HTTP/1.x parsing, over a real socket: two GETs on one kept
    connection; `Connection: close` honoured; POST 405, an over-long header line 431, a
    request line that is not HTTP 400, each closed and counted as a miss."""
    import socket
    import threading

    from wildix_ast.services.provisioning.server import ProvisioningHTTPServer

    credential = add_device(store, Device(mac="001565000042", vendor=Vendor.YEALINK,
                                          extension="101"))
    provisioner = _provisioner(store, tmp_path / "runtime", threshold=100)
    http = ProvisioningHTTPServer(("127.0.0.1", 0), provisioner, None)
    threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    port = http.server_address[1]
    link = f"/p/{credential}/001565000042.cfg"

    def exchange(data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10,
                                      source_address=("127.0.0.5", 0)) as sock:
            sock.sendall(data)
            answer = b""
            while chunk := sock.recv(65536):  # until the server closes
                answer += chunk
            return answer

    try:
        two = exchange(f"GET {link} HTTP/1.1\r\nHost: x\r\n\r\n"
                       f"GET {link} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert two.count(b"HTTP/1.1 200 OK\r\n") == 2 and two.count(b"account.1.password") == 2
        assert two.count(b"Connection: close\r\n") == 1  # only the last answer closes
        assert b"Server: wildix-ast-provisioning\r\n" in two
        assert exchange(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").startswith(
            b"HTTP/1.1 405 ")
        assert exchange(b"GET / HTTP/1.1\r\nX: " + b"a" * 5000 + b"\r\n\r\n").startswith(
            b"HTTP/1.1 431 ")
        assert exchange(b"\x16\x03\x01 hello\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        # each refusal is a miss for the source: 3 of them (the GETs were served)
        assert len(provisioner.config.guard._state.attempts["127.0.0.5"]) == 3
    finally:
        http.shutdown()
        http.server_close()


@pytest.mark.slow
def test_a_worker_dying_again_and_again_stops_the_watchdog(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The main process feeds systemd's watchdog only while every worker beats: one worker
    that dies at once after each restart withholds WATCHDOG=1 (systemd then restarts the
    whole service), and it is restarted meanwhile."""
    import os
    import signal
    import time

    from wildix_ast.services.provisioning import workers

    monkeypatch.setattr(workers, "WATCHDOG_EVERY", 0.2)
    monkeypatch.setattr(workers, "RESTART_PAUSE", 0.05)
    started = time.monotonic()
    sent: list[tuple[float, str]] = []

    def notify(message: str) -> None:
        sent.append((time.monotonic() - started, message))

    def work(heartbeat: workers.Heartbeat) -> None:
        if heartbeat.index == 1:
            raise RuntimeError("cannot start")  # every time
        while True:  # until the main process's SIGTERM (default action: end)
            heartbeat.beat()
            time.sleep(0.02)

    signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
    signal.setitimer(signal.ITIMER_REAL, 3.0)
    try:
        deaths = workers.run_workers(2, work, notify)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    assert sent[0][1] == "READY=1"
    assert deaths >= 5  # restarted each time
    fed = [at for at, message in sent if message == "WATCHDOG=1"]
    # the first start's grace (3 x 0.2 s), then nothing: worker 1 never beat
    assert all(at < 1.0 for at in fed), fed
