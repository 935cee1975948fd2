"""The provisioning server: HTTPS (HTTP only when the settings allow it), Python's own
`socketserver` and `ssl` with a kept thread per connection and its own HTTP/1.x parsing (no
framework: two routes, GET only, and the TLS handshake done in the connection's thread so
that a slow client never holds the accept loop); `workers.py` runs one per CPU.

Routes (docs/provisioning.md):

* `GET /p/<credential>/<file>`: a phone's own link. The file must name a known device
  (its MAC) of a vendor that uses that name, and the credential must match the device's
  kept hash (constant-time). An assigned device gets its line (SIP password included), an
  unassigned one its network settings only.
* `GET /enrol/<file>`: only while an enrolment window is open (`wildix-ast device enrol`),
  for an unknown MAC whose OUI is an allowed vendor's: the device is added, unassigned, and
  gets a file with no line whose provisioning link is its own new `/p/<credential>/`.

Everything else is a miss: the same 404 whatever the reason (an unknown MAC and a wrong
credential look alike), counted by the `Guard`, which bans the source at the threshold.
Every request is logged (source, MAC, file, outcome), never a credential."""

from __future__ import annotations

import contextlib
import email.utils
import logging
import re
import socket
import socketserver
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wildix_ast.errors import WildixError
from wildix_ast.model.devices import Device
from wildix_ast.services.provisioning.files import (
    is_common_file,
    parse_file_name,
    vendor_by_oui,
)
from wildix_ast.services.provisioning.guard import Guard
from wildix_ast.services.provisioning.render import (
    RenderedFile,
    SiteFacts,
    render_device_configuration,
)
from wildix_ast.store.devices import credential_matches
from wildix_ast.store.provisioning import Fetch

if TYPE_CHECKING:
    from wildix_ast.services.provisioning.workers import Heartbeat
    from wildix_ast.store.store import Store

log = logging.getLogger("wildix_ast.provisioning")

_CREDENTIAL = re.compile(r"[A-Za-z0-9_-]{16,64}")
_FILE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_PRINTABLE = re.compile(r"[^A-Za-z0-9_./-]")
MAX_PATH = 256
MAX_CONNECTIONS = 256
MAX_PER_SOURCE = 32
"""Connections at once from one address (a phone needs one; a NAT'd site behind one
address still gets 32): one slow client cannot take all MAX_CONNECTIONS."""
BANNED_LOG_EVERY = 60.0
WATCHDOG_EVERY = 10.0
FLUSH_EVERY = 1.0
SEEN_EVERY = 60.0
"""A phone's fetch is written to the store when its address, model or firmware changed, or
its last written one is this old (seconds): each commit makes every kept file stale (the
store's generation moves), so a write per second under steady fetching rendered every
file again and again."""
MAX_ENROL_PER_SOURCE = 1
"""Phones one address may enrol while the server runs (all its workers together)."""
IO_TIMEOUT = 10.0
CLOSE_TIMEOUT = 1.0
_LOOPBACK = frozenset({"127.0.0.1", "::1"})
CACHED_FILES = 4096
"""Rendered files kept (per device, file kind and credential): a 300-phone site's all."""
#: User-Agent: "Yealink SIP-T54W 96.86.0.100 00:15:65:ab:cd:ef" and the like
_AGENT = re.compile(r"(?:Yealink|snom|Grandstream|Poly(?:com)?)[ /_-]?(?:SIP-)?"
                    r"([A-Za-z0-9-]{1,30})[ /-]+([0-9][0-9A-Za-z._-]{0,30})", re.IGNORECASE)


@dataclass
class Outcome:
    """What one request got, for the log and the tests."""

    status: int
    outcome: str
    mac: str | None = None
    rendered: RenderedFile | None = None


@dataclass
class ProvisioningServerConfig:
    store: Store
    base_url: str
    """`https://pbx.example.org:8443`: the links the server writes into phones' files."""
    guard: Guard
    templates: Path | None = None
    facts_lock: threading.Lock = field(default_factory=threading.Lock)


class Provisioner:
    """The decisions, apart from HTTP: a path and a source in, an `Outcome` out."""

    def __init__(self, config: ProvisioningServerConfig) -> None:
        self.config = config
        self.store = config.store
        self._revision = self.store.revision_reader()
        self._facts: tuple[int, SiteFacts] | None = None
        self._facts_generation: int | None = None
        self._fetches: dict[str, Fetch] = {}
        self._written: dict[str, tuple[str, str | None, str | None, float]] = {}
        self._fetches_lock = threading.Lock()
        self._flushing = threading.Lock()
        self._flushed = time.monotonic()
        self._generation = store_generation(self.store)
        self._rendered: OrderedDict[tuple[str, str, str], tuple[int, Outcome]] = \
            OrderedDict()
        self._rendered_lock = threading.Lock()

    def flush(self) -> None:
        """Write the fetches gathered since the last flush (one transaction)."""
        from wildix_ast.store.provisioning import seen

        with self._flushing:
            with self._fetches_lock:
                fetches, self._fetches = list(self._fetches.values()), {}
            self._flushed = time.monotonic()
            seen(self.store, fetches)

    def flush_due(self) -> None:
        """Flush if fetches wait and the last flush is FLUSH_EVERY old (the accept loop
        calls it: a worker that gets no further request still writes its fetches)."""
        if self._fetches and time.monotonic() - self._flushed >= FLUSH_EVERY and \
                not self._flushing.locked():
            self.flush()

    def _record(self, fetch: Fetch) -> None:
        now = time.monotonic()
        with self._fetches_lock:
            last = self._written.get(fetch.mac)
            if last is not None and last[:3] == (fetch.ip, fetch.model, fetch.firmware) \
                    and now - last[3] < SEEN_EVERY:
                return  # written lately, nothing new: no commit, kept files stay valid
            self._written[fetch.mac] = (fetch.ip, fetch.model, fetch.firmware, now)
            if len(self._written) > 4 * CACHED_FILES:
                self._written.clear()  # a flood of MACs: forget, costs writes only
            self._fetches[fetch.mac] = fetch
        # one request a second pays for the write; the others never wait for it
        if time.monotonic() - self._flushed >= FLUSH_EVERY and \
                not self._flushing.locked():
            self.flush()

    def _record_fetch(self, mac: str, source: str, agent: str) -> None:
        model = firmware = None
        found = _AGENT.search(agent)
        if found:
            model, firmware = found.group(1), found.group(2)
        self._record(Fetch(mac, source, datetime.now(UTC), model, firmware))

    def facts(self, generation: int | None = None) -> SiteFacts:
        """The site's settings as the store holds them: read again only when the store's
        revision moved (and, on SQLite, looked at only when its generation moved)."""
        with self.config.facts_lock:
            if generation is not None and self._facts_generation == generation \
                    and self._facts is not None:
                return self._facts[1]
        revision = self._revision()
        with self.config.facts_lock:
            if self._facts is None or self._facts[0] != revision:
                self._facts = (revision, SiteFacts.of(self.store.export_site()))
            self._facts_generation = generation
            return self._facts[1]

    def handle(self, path: str, source: str, agent: str = "") -> Outcome:
        path = path.split("?", 1)[0]
        parts = path.split("/")
        if len(path) <= MAX_PATH and len(parts) == 4 and parts[0] == "" and parts[1] == "p" \
                and _CREDENTIAL.fullmatch(parts[2]) and _FILE.fullmatch(parts[3]):
            return self._own_link(parts[2], parts[3], source, agent)
        if len(path) <= MAX_PATH and len(parts) == 3 and parts[0] == "" \
                and parts[1] == "enrol" and _FILE.fullmatch(parts[2]):
            return self._enrol(parts[2], source, agent)
        return self._miss(source, "not a provisioning path")

    def _miss(self, source: str, reason: str, mac: str | None = None) -> Outcome:
        self.config.guard.miss(source, reason)
        return Outcome(404, f"refused: {reason}", mac)

    def _own_link(self, credential: str, name: str, source: str, agent: str) -> Outcome:
        from wildix_ast.store.provisioning import device_with_hash

        request = parse_file_name(name)
        if request is None:
            if is_common_file(name):
                return Outcome(404, "common file (none served)")
            return self._miss(source, "not a phone's file name")
        # read before the store is: a commit after this makes the kept file stale at once
        generation = self._generation() if self._generation is not None else None
        key = (request.mac, credential, name)
        if generation is not None:
            with self._rendered_lock:
                held = self._rendered.get(key)
                if held is not None and held[0] == generation:
                    self._rendered.move_to_end(key)
            if held is not None and held[0] == generation:
                self._record_fetch(request.mac, source, agent)
                return held[1]
        found = device_with_hash(self.store, request.mac)
        # an unknown MAC and a wrong credential are one answer: a scanner learns nothing
        if found is None:
            return self._miss(source, "unknown MAC", request.mac)
        device, kept = found
        if not credential_matches(device.mac, credential, kept):
            return self._miss(source, "wrong credential", request.mac)
        if device.vendor not in request.vendors:
            return self._miss(source, f"not a {device.vendor.value} file name", request.mac)
        served = self._serve(device, credential, request.kind, source, agent, "served",
                             generation)
        if generation is not None:
            with self._rendered_lock:
                self._rendered[key] = (generation, served)
                self._rendered.move_to_end(key)
                while len(self._rendered) > CACHED_FILES:
                    self._rendered.popitem(last=False)
        return served

    def _enrol(self, name: str, source: str, agent: str) -> Outcome:
        from wildix_ast.store.provisioning import device_with_hash, enrol

        request = parse_file_name(name)
        if request is None:
            if is_common_file(name):
                return Outcome(404, "common file (none served)")
            return self._miss(source, "not a phone's file name")
        vendor = vendor_by_oui(request.mac)
        if vendor is None or vendor not in request.vendors:
            return self._miss(source, "enrolment: not a known phone vendor's MAC", request.mac)
        # a phone has one address: many MACs from one is someone making them up
        if not self.config.guard.claim_enrolment(source, MAX_ENROL_PER_SOURCE):
            return self._miss(source, "enrolment: this address enrolled a phone already",
                              request.mac)
        credential = enrol(self.store, request.mac, vendor, source)
        if credential is None:  # nothing enrolled: the address keeps its one enrolment
            self.config.guard.release_enrolment(source)
            known = device_with_hash(self.store, request.mac) is not None
            return self._miss(source, "enrolment: MAC known already" if known
                              else "enrolment: no window open for this vendor", request.mac)
        device = Device(mac=request.mac, vendor=vendor)
        return self._serve(device, credential, request.kind, source, agent, "enrolled")

    def _serve(self, device: Device, credential: str, kind: Any, source: str, agent: str,
               outcome: str, generation: int | None = None) -> Outcome:
        link = f"{self.config.base_url}/p/{credential}/"
        rendered = render_device_configuration(self.store, device, provisioning_url=link,
                                               kind=kind, templates=self.config.templates,
                                               facts=self.facts(generation))
        self._record_fetch(device.mac, source, agent)
        served = outcome if device.extension else f"{outcome} (unassigned: no line)"
        return Outcome(200, served, device.mac, rendered)


def store_generation(store: Store) -> Callable[[], int] | None:
    """A number that changes whenever anyone commits to the store, read before a device's
    file is rendered and compared when it is served again from memory: SQLite's
    `PRAGMA data_version` on a kept connection (every other connection's commit changes it:
    an import, `device reset-password`, `assign`, a handset login, and this server's own
    once-a-second fetch records too). None (no kept files: every request reads the store)
    for a database server, which has no such counter."""
    if store.access.path is None:  # the SQLite file, however the store was opened
        return None
    read = store.access.sqlite_reader("PRAGMA data_version", "reading the store generation")
    return lambda: int(read())


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            414: "URI Too Long", 431: "Request Header Fields Too Large",
            500: "Internal Server Error"}
MAX_LINE = 2048
"""Bytes of the request line or of one header line (a phone's are well under 300)."""
MAX_HEADERS = 64


class _Handler(socketserver.StreamRequestHandler):
    """HTTP/1.x GET, parsed here: the request line and the header lines split as they come
    (http.server parses headers with the e-mail package, a third of a kept file's CPU),
    and each answer written whole in one TLS record. Keep-alive for HTTP/1.1 clients
    that do not say `Connection: close`; a request with a body is answered and closed."""

    server: ProvisioningHTTPServer
    timeout = IO_TIMEOUT
    rbufsize = 8192

    def handle(self) -> None:
        try:
            while self._one():
                pass
        except (OSError, ssl.SSLError, UnicodeError) as exc:
            # a phone gone, a timeout, a broken TLS record: nothing to answer
            log.debug("source=%s connection ended: %s", self.client_address[0], exc)

    def _one(self) -> bool:
        """Answer one request; whether the connection stays open for another."""
        line = self.rfile.readline(MAX_LINE + 1)
        if not line:
            return False
        source = self.client_address[0]
        if len(line) > MAX_LINE:
            return self._refuse_malformed(414, "request line too long")
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
            return self._refuse_malformed(400, "not an HTTP/1.x request line")
        method, path, version = parts
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            header = self.rfile.readline(MAX_LINE + 1)
            if len(header) > MAX_LINE:
                return self._refuse_malformed(431, "header line too long")
            if header in (b"\r\n", b"\n", b""):
                break
            name, colon, value = header.decode("latin-1").partition(":")
            if not colon:
                return self._refuse_malformed(400, "header line without a colon")
            headers[name.strip().lower()] = value.strip()
        else:
            return self._refuse_malformed(431, "too many header lines")
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close" \
            and "content-length" not in headers and "transfer-encoding" not in headers
        if method != "GET":
            self.server.guard.miss(source, f"method {method}")
            log.info("source=%s mac=- file=%s status=405 outcome=refused: method %s", source,
                     _shown(path), _PRINTABLE.sub("?", method)[:10])
            self._answer(405, "text/plain", b"method not allowed\n", keep=False)
            return False
        try:
            result = self.server.provisioner.handle(path, source, headers.get("user-agent", ""))
        except WildixError as exc:
            log.error("source=%s path=%s outcome=error: %s", source, _shown(path), exc)
            result = Outcome(500, "error")
        except Exception:
            log.exception("source=%s path=%s outcome=error", source, _shown(path))
            result = Outcome(500, "error")
        log.info("source=%s mac=%s file=%s status=%d outcome=%s", source,
                 result.mac or "-", _shown(path), result.status, result.outcome)
        if result.rendered is not None:
            self._answer(200, result.rendered.content_type, result.rendered.body, keep)
        else:
            self._answer(result.status, "text/plain",
                         b"not found\n" if result.status == 404 else b"error\n", keep)
        return keep

    def _refuse_malformed(self, status: int, reason: str) -> bool:
        """Not HTTP as phones speak it: a miss like any other, answered and closed."""
        source = self.client_address[0]
        self.server.guard.miss(source, reason)
        log.info("source=%s mac=- file=- status=%d outcome=refused: %s", source, status,
                 reason)
        self._answer(status, "text/plain", b"bad request\n", keep=False)
        return False

    def _answer(self, status: int, content_type: str, body: bytes, keep: bool) -> None:
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Server: wildix-ast-provisioning\r\nDate: {_http_date()}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                f"{'Cache-Control: no-store' if status == 200 else 'Cache-Control: no-cache'}"
                f"\r\n{'' if keep else 'Connection: close' + chr(13) + chr(10)}\r\n")
        self.wfile.write(head.encode("latin-1") + body)


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The Date header, formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def _shown(path: str) -> str:
    """The path for the log: a credential replaced, nothing unprintable."""
    parts = _PRINTABLE.sub("?", path.split("?", 1)[0]).split("/")
    if len(parts) >= 3 and parts[1] == "p":
        parts[2] = "<credential>"
    return "/".join(parts)[:120]


class ProvisioningHTTPServer(socketserver.ThreadingTCPServer):
    """One kept thread per connection, at most MAX_CONNECTIONS at once; banned sources are
    closed before a byte is read; TLS handshakes happen in the connection's thread."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], provisioner: Provisioner,
                 tls: ssl.SSLContext | None, listener: socket.socket | None = None,
                 heartbeat: Heartbeat | None = None) -> None:
        """`listener`: a socket listening already, shared with other worker processes
        (`workers.listen`); `heartbeat`: a worker's line to its main process, which feeds
        systemd's watchdog (None: this process feeds it)."""
        self.provisioner = provisioner
        self.heartbeat = heartbeat
        self.guard = provisioner.config.guard
        self.tls = tls
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        # one thread per connection at most, started once and kept (the slots cap them)
        self._pool = ThreadPoolExecutor(MAX_CONNECTIONS, thread_name_prefix="provisioning")
        self._refused: dict[str, tuple[int, float]] = {}
        self._per_source: dict[str, int] = {}
        self._per_source_lock = threading.Lock()
        self._fed = 0.0
        self._orphaned = False
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler, bind_and_activate=listener is None)
        if listener is not None:
            self.socket.close()
            self.socket = listener
            self.server_address = listener.getsockname()

    def service_actions(self) -> None:
        """Called by the accept loop between requests (every poll interval): systemd's
        watchdog is fed only while that loop runs."""
        try:
            self.provisioner.flush_due()
        except WildixError as exc:  # the store busy or gone: the next look tries again
            log.error("recording phones' fetches: %s", exc)
        if self.heartbeat is not None:
            self.heartbeat.beat()
            if self.heartbeat.orphaned() and not self._orphaned:
                self._orphaned = True  # the main process was killed: stop with it
                log.warning("the main process is gone: this worker stops")
                threading.Thread(target=self.shutdown, daemon=True).start()
            return
        now = time.monotonic()
        if now - self._fed >= WATCHDOG_EVERY:
            from wildix_ast.services.sdnotify import notify

            notify("WATCHDOG=1")
            self._fed = now

    def verify_request(self, request: Any, client_address: Any) -> bool:
        source = client_address[0]
        if self.guard.banned(source):
            # one line a minute per banned source: a scanner must not fill the disk
            now = time.monotonic()
            count, since = self._refused.get(source, (0, now - BANNED_LOG_EVERY))
            if now - since >= BANNED_LOG_EVERY:
                log.info("source=%s mac=- file=- status=0 outcome=refused: banned "
                         "(%d connections refused since the last line)", source, count + 1)
                self._refused[source] = (0, now)
            else:
                self._refused[source] = (count + 1, since)
            return False
        with self._per_source_lock:
            # the PBX itself (a local proxy, a benchmark's client) is not capped per source
            if source not in _LOOPBACK and self._per_source.get(source, 0) >= MAX_PER_SOURCE:
                log.warning("source=%s outcome=refused: %d connections at once from it",
                            source, MAX_PER_SOURCE)
                return False
            if not self._slots.acquire(blocking=False):
                log.warning("source=%s outcome=refused: %d connections at once",
                            source, MAX_CONNECTIONS)
                return False
            self._per_source[source] = self._per_source.get(source, 0) + 1
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        """To a kept thread (a new thread per connection cost more CPU than the request)."""
        try:
            self._pool.submit(self.process_request_thread, request, client_address)
        except RuntimeError:  # shutting down
            self._release(client_address[0])
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("source=%s outcome=error", client_address[0])

    def _release(self, source: str) -> None:
        with self._per_source_lock:
            left = self._per_source.pop(source, 1) - 1
            if left:
                self._per_source[source] = left
        self._slots.release()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(IO_TIMEOUT)
            # the answer goes out as written (headers, body, TLS close_notify): Nagle would
            # hold each small segment until the phone's delayed ACK, 40 ms apiece
            with contextlib.suppress(OSError):
                request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                try:
                    request = self.tls.wrap_socket(request, server_side=True)
                except (OSError, ssl.SSLError) as exc:
                    log.info("source=%s outcome=refused: TLS handshake: %s",
                             client_address[0], getattr(exc, "reason", None) or exc)
                    self.shutdown_request(request)
                    return
            super().process_request_thread(request, client_address)
        finally:
            self._release(client_address[0])


    def shutdown_request(self, request: Any) -> None:
        """Close a TLS connection with TLS's own close_notify first: without it, OpenSSL 3
        clients report "unexpected eof" (a phone may take its file as truncated). At most
        a second waiting for the peer's answer, never the 10 s I/O timeout."""
        if isinstance(request, ssl.SSLSocket):
            with contextlib.suppress(OSError, ValueError):
                request.settimeout(CLOSE_TIMEOUT)
                request.unwrap()
        super().shutdown_request(request)


def tls_context(certificate: Path, private_key: Path) -> ssl.SSLContext:
    """Server TLS: 1.2 at least (phones of the last ten years), the system's ciphers."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(certificate), str(private_key))
    return context
