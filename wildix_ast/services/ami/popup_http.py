"""The popup URL notified by HTTP (preference `popup_http`): when the dialplan publishes a
call's popup (AMI `UserEvent: WildixPopup`, `Extension`, `URL`, just before the phone
rings), the AMI service sends one GET to the URL.

Off the call path by construction: the dialplan only raises an event and goes on dialling;
the request is made later, by this service, and nothing waits for it. Bounded so that a slow
or dead CRM costs the service little and the CRM no storm: a total timeout per request
(name resolution included), a few requests at once, a bounded backlog beyond which popups
are dropped (counted, logged), no retry. Failures are logged at most once a minute per
host, with how many failed since.

Only to where the user said: the event's URL is checked against the user's stored template
(the store read now, so a change applies to the next call): it must be that template
expanded (`popup_url.is_expansion_of`, so no value can change the host or add a query key),
an http(s) URL whose host is written in the template, and the user must have `popup_http`
on. A forged `UserEvent` (any AMI client with the `user` write class can send one) reaches
nothing the user did not configure.

Why a small client of our own rather than urllib in threads: urllib's timeout does not
cover name resolution (`getaddrinfo` blocks without one), so a hung resolver would pin
threads beyond any bound; here resolution runs on a pool of its own (never the loop's
default executor, which the firewall's iptables runs use) and the whole request is under
one `asyncio.timeout`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from wildix_ast.calls.popup_url import is_expansion_of
from wildix_ast.model.preferences import http_problem

if TYPE_CHECKING:  # the model costs every CLI start ~0.2 s to import; only types here
    from wildix_ast.model.users import User

log = logging.getLogger(__name__)

POPUP_EVENT = "WildixPopup"
UserLookup = Callable[[str], "User | None"]


@dataclass(frozen=True)
class PopupHttpSettings:
    timeout: float = 3.0         # seconds for one whole request (resolve, connect, answer)
    concurrency: int = 4         # requests in flight at once
    backlog: int = 64            # popups waiting beyond that are dropped
    log_every: float = 60.0      # seconds between two failure lines for one host


class HttpError(Exception):
    pass


class PopupNotifier:
    def __init__(self, lookup: UserLookup, settings: PopupHttpSettings = PopupHttpSettings()
                 ) -> None:
        self.lookup = lookup
        self.settings = settings
        self.counts = {"sent": 0, "failed": 0, "refused": 0, "dropped": 0}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.concurrency)
        # look-ups and name resolution block: threads of their own, as many as requests
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.concurrency, thread_name_prefix="popup-http")
        self._failures: dict[str, tuple[float, int]] = {}  # host -> (last logged, since)

    def on_event(self, event: Mapping[str, str]) -> None:
        """Called by the service for every AMI event (on the loop: returns at once)."""
        if event.get("Event") != "UserEvent" or event.get("UserEvent") != POPUP_EVENT:
            return
        extension, url = event.get("Extension", ""), event.get("URL", "")
        if not extension or not url:
            return
        if len(self._tasks) >= self.settings.backlog:
            self.counts["dropped"] += 1
            log.warning("popup HTTP: %d requests pending, popup for %s dropped",
                        len(self._tasks), extension)
            return
        task = asyncio.get_running_loop().create_task(self._notify(extension, url))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self, extension: str, url: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.settings.timeout):
                user = await loop.run_in_executor(self._pool, self.lookup, extension)
        except Exception as e:  # a store that is down costs this popup only
            self.counts["failed"] += 1
            log.error("popup HTTP for %s: the store cannot be read: %s", extension,
                      e or type(e).__name__)
            return
        refusal = self._refusal(user, url)
        if refusal is not None:
            if refusal:  # '' : the user did not ask for HTTP, nothing to say
                self.counts["refused"] += 1
                log.warning("popup HTTP for %s not sent: %s", extension, refusal)
            return
        async with self._slots:
            try:
                async with asyncio.timeout(self.settings.timeout):
                    status = await self._get(url)
            except (OSError, TimeoutError, HttpError, ssl.SSLError) as e:
                self._failed(url, str(e) or type(e).__name__)
                return
        if status >= 400:
            self._failed(url, f"HTTP {status}")
            return
        self.counts["sent"] += 1
        log.debug("popup HTTP for %s: %s answered %d", extension, urlsplit(url).netloc, status)

    @staticmethod
    def _refusal(user: User | None, url: str) -> str | None:
        """None: send it; '': not asked for; else why not (the event is not the user's)."""
        if user is None:
            return "no such user"
        preferences = user.preferences
        if not preferences.popup_http or preferences.popup_url is None:
            return ""
        problem = http_problem(preferences.popup_url)
        if problem is not None:
            return problem
        if not is_expansion_of(preferences.popup_url, url):
            return "the event's URL is not the user's popup URL expanded"
        return None

    async def _get(self, url: str) -> int:
        """One GET; the answer's status code (the body is not read: nobody shows it)."""
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        loop = asyncio.get_running_loop()
        addresses = await loop.run_in_executor(
            self._pool, socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
        if not addresses:
            raise HttpError(f"{host} has no address")
        family, _, _, _, address = addresses[0]
        reader, writer = await asyncio.open_connection(
            str(address[0]), port, family=family,
            ssl=ssl.create_default_context() if secure else None,
            server_hostname=host if secure else None)
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            writer.write(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                         "User-Agent: wildix-ast\r\nAccept: */*\r\nConnection: close\r\n\r\n"
                         .encode("ascii"))
            await writer.drain()
            words = (await reader.readline()).split()
            if len(words) < 2 or not words[0].startswith(b"HTTP/") or not words[1].isdigit():
                raise HttpError("the answer is not HTTP")
            return int(words[1])
        finally:
            writer.close()

    def _failed(self, url: str, why: str) -> None:
        self.counts["failed"] += 1
        host = urlsplit(url).netloc
        now = time.monotonic()
        last, since = self._failures.get(host, (float("-inf"), 0))
        if now - last < self.settings.log_every:
            self._failures[host] = (last, since + 1)
            return
        self._failures[host] = (now, 0)
        log.warning("popup HTTP to %s failed: %s%s", host, why,
                    f" ({since} more failures since the last line)" if since else "")

    def status(self) -> dict[str, int]:
        return {**self.counts, "pending": len(self._tasks)}

    async def close(self) -> None:
        """Cancel what is pending (a stopping service sends nothing more)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
