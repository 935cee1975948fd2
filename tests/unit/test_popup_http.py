"""The popup URL notified by HTTP, without Asterisk: which URLs may be requested (the user's
template expanded, to the host it names), and the notifier against loopback HTTP servers
(one GET per popup, a slow or dead server costs a bounded time, a forged event reaches
nothing)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from wildix_ast.calls.popup_url import PopupCall, is_expansion_of, published
from wildix_ast.errors import SettingsError
from wildix_ast.model.preferences import Preferences, edit, http_problem
from wildix_ast.model.users import User
from wildix_ast.services.ami.popup_http import PopupHttpSettings, PopupNotifier

TEMPLATE = "http://127.0.0.1:{port}/call?n={CALLERNUM}&short={CALLERNUM:1}&who={CALLERNAME}"


def test_only_the_template_expanded_matches() -> None:
    template = "https://crm.example/c,x?n={CALLERNUM}&t={TAGS}&u={UNKNOWN}"
    url = published(template, PopupCall(caller_number="+33 1/2?a#b@c", tags=("vip", "fr")))
    assert is_expansion_of(template, url)
    assert url == "https://crm.example/c%2Cx?n=%2B33%201%2F2%3Fa%23b%40c&t=vip%2Cfr&u={UNKNOWN}"
    for forged in ("https://evil.example/c%2Cx?n=1&t=&u={UNKNOWN}",
                   "https://crm.example/c%2Cx?n=1&t=&u={UNKNOWN}&extra=1",
                   "https://crm.example/c%2Cx?n=1/..&t=&u={UNKNOWN}",
                   "https://crm.example@evil.example/c%2Cx?n=1&t=&u={UNKNOWN}"):
        assert not is_expansion_of(template, forged), forged


@pytest.mark.parametrize(("template", "problem"), [
    ("http://127.0.0.1:8080/c?n={CALLERNUM}", None),
    ("https://crm.example/c", None),
    ("crm://x/{CALLERNUM}", "http:// or https://"),
    ("http://{CALLERNUM}.example/", "not a placeholder"),
    ("http://user:pw@crm.example/", "no user or password"),
    ("http://crm.example:99999/", "bad port"),
    ("http:///path", "needs a host"),
    ("http://crmé.example/", "ASCII"),
])
def test_http_problem(template: str, problem: str | None) -> None:
    found = http_problem(template)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_popup_http_is_refused_without_a_url_it_can_send_to() -> None:
    with pytest.raises(SettingsError) as caught:
        edit(Preferences(), ["popup_url=crm://x/{CALLERNUM}", "popup_http=true"])
    assert [(p.location, p.message) for p in caught.value.problems] == [
        ("popup_http", "an HTTP notification needs an http:// or https:// URL")]
    with pytest.raises(SettingsError):
        edit(Preferences(), ["popup_http=true"])
    assert edit(Preferences(), ["popup_url=http://127.0.0.1/c?n={CALLERNUM}",
                                "popup_http=true"]).popup_http


class Recorder(BaseHTTPRequestHandler):
    paths: list[str]

    def do_GET(self) -> None:
        self.paths.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[int, list[str]]]:
    paths: list[str] = []
    handler = type("Handler", (Recorder,), {"paths": paths})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], paths
    finally:
        httpd.shutdown()
        httpd.server_close()


def user(template: str, on: bool = True) -> User:
    return User.model_validate({"extension": "102", "name": "Bob", "preferences": {
        "popup_url": template, "popup_http": on}})


def popup_event(url: str, extension: str = "102") -> dict[str, str]:
    return {"Event": "UserEvent", "UserEvent": "WildixPopup", "Extension": extension,
            "URL": url}


async def settle(notifier: PopupNotifier, timeout: float = 10) -> float:
    start = time.monotonic()
    while notifier.status()["pending"]:
        assert time.monotonic() - start < timeout
        await asyncio.sleep(0.02)
    return time.monotonic() - start


FAST = PopupHttpSettings(timeout=1.0)


def run(notifier_user: User | None, *events: dict[str, str],
        settings: PopupHttpSettings = FAST) -> PopupNotifier:
    async def go() -> PopupNotifier:
        notifier = PopupNotifier(lambda ext: notifier_user if ext == "102" else None, settings)
        for event in events:
            notifier.on_event(event)
        await settle(notifier)
        await notifier.close()
        return notifier

    return asyncio.run(go())


def test_one_get_with_the_expanded_query(server: tuple[int, list[str]]) -> None:
    port, paths = server
    template = TEMPLATE.replace("{port}", str(port))
    url = published(template, PopupCall(caller_number="0612", caller_name="Ann Lee"))
    notifier = run(user(template), popup_event(url))
    assert paths == ["/call?n=0612&short=612&who=Ann%20Lee"]
    assert notifier.counts == {"sent": 1, "failed": 0, "refused": 0, "dropped": 0}


def test_nothing_is_sent_unless_asked_and_matching(server: tuple[int, list[str]]) -> None:
    port, paths = server
    template = TEMPLATE.replace("{port}", str(port))
    url = published(template, PopupCall(caller_number="0612"))
    off = run(user(template, on=False), popup_event(url))
    assert off.counts["refused"] == 0 and off.counts["sent"] == 0
    forged = run(user(template), popup_event(url + "&admin=1"),
                 popup_event(url.replace("127.0.0.1", "localhost")),
                 popup_event(url, extension="999"))
    assert forged.counts == {"sent": 0, "failed": 0, "refused": 3, "dropped": 0}
    assert paths == []


def test_a_dead_or_silent_server_costs_one_timeout_and_no_retry() -> None:
    with socket.socket() as silent:  # accepts (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))  # bound, not listening: connections refused
        try:
            for port in (silent.getsockname()[1], dead.getsockname()[1]):
                template = TEMPLATE.replace("{port}", str(port))
                url = published(template, PopupCall(caller_number="0612"))
                started = time.monotonic()
                notifier = run(user(template), popup_event(url), popup_event(url))
                assert time.monotonic() - started < 2.5  # both at once, 1 s timeout each
                assert notifier.counts == {"sent": 0, "failed": 2, "refused": 0,
                                           "dropped": 0}
        finally:
            dead.close()


def test_beyond_the_backlog_popups_are_dropped(server: tuple[int, list[str]]) -> None:
    port, paths = server
    template = TEMPLATE.replace("{port}", str(port))
    url = published(template, PopupCall(caller_number="0612"))
    notifier = run(user(template), *[popup_event(url)] * 5,
                   settings=PopupHttpSettings(timeout=1.0, concurrency=1, backlog=3))
    assert notifier.counts["sent"] == 3 and notifier.counts["dropped"] == 2
    assert len(paths) == 3
