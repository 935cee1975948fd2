"""WMS services on a live Asterisk 22 with the FastAGI service reading the site's store:
feature codes dialled from a SIPp phone change the preferences and the next call follows
them with no reload (must show 4); mobility rings a provider's UAS (the mobile) after the
delay and, with confirmation, connects only after its `*` (must show 2); a missed call
queues one mail. Every test ends with no channel left on Asterisk."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.agi_fixtures import AgiService, agi_service
from support.live_site import LiveSite, example_site, live_site, without_trunk_procedures

from wildix_ast.ami import AmiClient
from wildix_ast.calls.missed_calls import MailSpool
from wildix_ast.lab.allocator import free_port
from wildix_ast.lab.sipp import SipMessage, SippDriver, UasHandle
from wildix_ast.model.call_classes import DialplanGeneral
from wildix_ast.model.preferences import Hotline, Preferences
from wildix_ast.model.site import Site
from wildix_ast.model.trunks import Trunk, TrunkGroup
from wildix_ast.services.agi.routes import StoreLookup
from wildix_ast.services.ami.account import ami_settings
from wildix_ast.services.ami.popup_http import PopupHttpSettings
from wildix_ast.services.ami.service import MonitorService, ServiceConfig

pytestmark = pytest.mark.lab

PROVIDER = "127.0.0.2"
MOBILE = "+33698765432"
MOBILITY_DELAY = 5


def services_site(provider_port: int) -> Site:
    """The example site with one loopback IP trunk (the provider's UAS) for every external
    call, and 102 owning a mobile."""
    base = without_trunk_procedures(example_site(ring_timeout=8))
    users = [u.model_copy(update={"mobile": MOBILE}) if u.extension == "102" else u
             for u in base.users]
    dialplan = base.dialplan.model_copy(update={"general": DialplanGeneral(trunk_group="main")})
    return Site.model_validate({
        **base.model_dump(exclude={"trunks", "trunk_groups", "dialplan", "users"}),
        "users": [u.model_dump() for u in users],
        "dialplan": dialplan.model_dump(),
        # its provider comes and goes with each test: not qualified
        "trunks": [Trunk(name="primary", auth="ip", host=PROVIDER, port=provider_port,
                         qualify_frequency=0).model_dump()],
        "trunk_groups": [TrunkGroup(name="main", trunks=["primary"]).model_dump()],
    })


class Services:
    def __init__(self, live: LiveSite, agi: AgiService, provider_port: int,
                 spool: MailSpool) -> None:
        self.live, self.agi, self.provider_port, self.spool = live, agi, provider_port, spool

    def sipp(self) -> SippDriver:
        return self.live.sipp()

    def provider(self, **kwargs: object) -> UasHandle:
        driver = SippDriver(self.live.lab.ports.sip, local_ip=PROVIDER,
                            work_dir=self.live.work / "providers")
        return driver.answer("mobile", port=self.provider_port, timeout=90,  # type: ignore[arg-type]
                             **kwargs)

    def preferences(self, extension: str) -> Preferences:
        found = self.live.store.preferences_of(extension)
        assert found is not None
        return found

    def reload_time(self) -> str:
        async def ask() -> str:
            async with self.live.ami() as ami:
                reply = await ami.action("CoreStatus")
                return f"{reply.get('CoreReloadDate')} {reply.get('CoreReloadTime')}"

        return asyncio.run(ask())


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    work = tmp_path_factory.mktemp("services")
    provider_port = free_port(PROVIDER)
    spool = MailSpool(work / "spool")
    site = services_site(provider_port)
    with live_site(work, "services", site, from_store=False) as live, \
            agi_service("--db", str(work / "store.sqlite3"), "--mail-spool", str(spool.root),
                        "--port", str(live.lab.ports.agi),
                        timeout=60.0) as agi:  # a loaded machine starts Python slowly
        assert agi.port == live.lab.ports.agi  # where the lab's dialplan asks
        yield Services(live, agi, provider_port, spool)


@pytest.fixture
def clean(services: Services) -> Iterator[Services]:
    yield services
    assert services.live.wait_no_channels() == 0, "channels left on Asterisk after the test"


def invites(messages: list[SipMessage]) -> list[SipMessage]:
    return [m for m in messages if m.request_method == "INVITE"]


def dial(services: Services, ext: str, number: str, **kwargs: object) -> object:
    return services.sipp().call(ext, services.live.password(ext), number,  # type: ignore[arg-type]
                                **kwargs)


# --- must show 4: forward-all by feature code, no reload ------------------------------------

def test_forward_all_by_feature_code_is_followed_by_the_next_call_without_reload(
        clean: Services) -> None:
    live = clean.live
    reloaded = clean.reload_time()
    sipp = clean.sipp()
    set_on = sipp.call("102", live.password("102"), "63*2*101", hold_seconds=4)
    assert set_on.connected, set_on.run.describe()
    prefs = clean.preferences("102")
    assert prefs.internal.forward_always == prefs.external.forward_always == "101"
    with sipp.phone("101", live.password("101")) as alice, \
            sipp.phone("102", live.password("102"), calls=0) as bruno:
        forwarded = sipp.call("100", live.password("100"), "102", hold_seconds=1)
        alice.uas.wait(timeout=20)
        assert forwarded.connected, forwarded.run.describe()
        assert len(invites(alice.uas.messages())) == 1
        assert invites(bruno.uas.messages()) == []  # the forward: 102's phone never rang
    off = sipp.call("102", live.password("102"), "63*0", hold_seconds=3)
    assert off.connected
    assert clean.preferences("102").internal.forward_always is None
    with sipp.phone("102", live.password("102")) as bruno:
        direct = sipp.call("100", live.password("100"), "102", hold_seconds=1)
        bruno.uas.wait(timeout=20)
        assert direct.connected and len(invites(bruno.uas.messages())) == 1
    assert clean.reload_time() == reloaded  # no reload happened


def test_dnd_by_feature_code_sends_calls_to_the_busy_path(clean: Services) -> None:
    live = clean.live
    sipp = clean.sipp()
    assert sipp.call("102", live.password("102"), "60*1", hold_seconds=3).connected
    assert clean.preferences("102").dnd is True
    try:
        with sipp.phone("102", live.password("102"), calls=0) as bruno:
            # busy path: 102's busy mailbox answers, the phone never rings
            busy = sipp.call("100", live.password("100"), "102", hold_seconds=2)
            assert busy.connected
            assert invites(bruno.uas.messages()) == []
    finally:
        assert sipp.call("102", live.password("102"), "60*0", hold_seconds=3).connected
    assert clean.preferences("102").dnd is False


def test_a_code_that_cannot_apply_changes_nothing(clean: Services) -> None:
    live = clean.live
    before = live.store.revision()
    heard = clean.sipp().call("102", live.password("102"), "63*2*102", hold_seconds=3)
    assert heard.connected  # the error prompts play
    assert live.store.revision() == before


# --- must show 2: mobility, with confirmation -------------------------------------------------

def _mobility(services: Services, *, confirm: bool) -> None:
    def on(p: Preferences) -> Preferences:
        return p.model_copy(update={"internal": p.internal.model_copy(update={
            "mobility": True, "mobility_delay": MOBILITY_DELAY,
            "mobility_confirmation": confirm, "call_timeout": 40})})

    services.live.store.change_preferences("102", on)


def test_mobility_rings_the_mobile_after_the_delay_and_connects_after_star(
        clean: Services) -> None:
    live = clean.live
    _mobility(clean, confirm=True)
    sipp = clean.sipp()
    with sipp.phone("102", live.password("102"), behaviour="ignore") as bruno, \
            clean.provider(dtmf="*", dtmf_delay=6.0) as mobile:
        started = time.time()
        result = sipp.call("101", live.password("101"), "102", hold_seconds=2, timeout=60)
        mobile.wait(timeout=30)
        bruno_saw = bruno.uas.messages()
    assert result.connected, result.run.describe()
    (invite,) = invites(mobile.messages())
    assert invite.start_line.split()[1].startswith(f"sip:{MOBILE}@")
    assert invite.time is not None and invite.time - started >= MOBILITY_DELAY - 0.5
    answered = [m for m in result.run.messages if m.status == 200 and m.method == "INVITE"]
    assert answered and answered[0].time is not None
    # connected only once the mobile pressed * (6 s after it answered), not when it answered
    assert answered[0].time - invite.time >= 6.0, (answered[0].time, invite.time)
    assert any(m.request_method == "CANCEL" for m in bruno_saw)  # the phone stops ringing


def test_mobility_without_star_never_connects_the_caller_to_the_mobile(
        clean: Services) -> None:
    live = clean.live
    _mobility(clean, confirm=True)
    sipp = clean.sipp()
    with sipp.phone("102", live.password("102"), behaviour="ignore") as bruno, \
            clean.provider() as mobile:  # answers (like a mobile's voicemail), presses nothing
        result = sipp.call("101", live.password("101"), "102", cancel_after=30, timeout=60)
        seen = mobile.wait(timeout=30)
        del bruno
    assert not result.connected, result.run.describe()
    assert len(invites(mobile.messages())) == 1
    # Asterisk hung the mobile up after the unanswered confirmation (not the caller's cancel)
    byes = [m for m in mobile.messages() if m.request_method == "BYE"]
    assert byes and seen.answered == 1


def test_mobility_rings_the_mobile_when_the_phone_is_offline(clean: Services) -> None:
    live = clean.live
    clean.live.store.change_preferences("102", lambda p: p.model_copy(update={
        "internal": p.internal.model_copy(update={
            "mobility": True, "mobility_delay": 0, "mobility_confirmation": False})}))
    with clean.provider() as mobile:  # 102 has no phone registered
        result = clean.sipp().call("101", live.password("101"), "102", hold_seconds=1)
        mobile.wait(timeout=20)
    assert result.connected, result.run.describe()
    (invite,) = invites(mobile.messages())
    assert invite.start_line.split()[1].startswith(f"sip:{MOBILE}@")


# --- popup URL --------------------------------------------------------------------------------

def test_popup_url_is_expanded_per_call_and_published_to_ami_clients(clean: Services) -> None:
    live = clean.live
    live.store.change_preferences("102", lambda p: p.model_copy(update={
        "popup_url": "https://crm.example/call?n={CALLERNUM}&short={CALLERNUM:1}&t={CALLTYPE}",
        "internal": p.internal.model_copy(update={"mobility": False})}))
    seen: list[dict[str, str]] = []

    async def listen() -> None:
        c = live.compiled
        async with AmiClient(c.ami_host, c.ami_port, c.ami_username, c.ami_secret,
                             events=True) as ami:
            ami.on_event("UserEvent", lambda event: seen.append(dict(event)))
            sipp = clean.sipp()
            with sipp.phone("102", live.password("102")):
                result = await asyncio.to_thread(
                    sipp.call, "101", live.password("101"), "102", hold_seconds=1)
            assert result.connected
            await asyncio.sleep(0.5)

    try:
        asyncio.run(listen())
    finally:
        live.store.change_preferences("102", lambda p: p.model_copy(
            update={"popup_url": None}))
    popups = [e for e in seen if e.get("UserEvent") == "WildixPopup"]
    assert len(popups) == 1, seen
    assert popups[0]["Extension"] == "102"
    assert popups[0]["URL"] == "https://crm.example/call?n=101&short=01&t=internal"



def test_popup_url_is_notified_by_http_off_the_call_path(clean: Services) -> None:
    """With popup_http on, the AMI service (its own least-privilege account, the store for
    the user's template) sends one GET with the expanded query for a real call to 102; with
    the server silent (accepts, never answers) or down, the calls connect all the same."""
    live = clean.live
    paths: list[str] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    down = free_port("127.0.0.1")
    db = str(live.work / "store.sqlite3")
    # the lab's AMI port; the account and secret the store keeps for the AMI service
    config = ServiceConfig(ami_settings("127.0.0.1", live.compiled.ami_port, None, "", db,
                                        timeout=2.0),
                           live.work / "runtime-popup", status_interval=0.2,
                           popup_lookup=StoreLookup(db),
                           popup_http=PopupHttpSettings(timeout=1.0))

    def point_to(port: int) -> None:
        live.store.change_preferences("102", lambda p: p.model_copy(update={
            "popup_url": f"http://127.0.0.1:{port}/call?n={{CALLERNUM}}&short={{CALLERNUM:1}}"
                         "&t={CALLTYPE}",
            "popup_http": True,
            "internal": p.internal.model_copy(update={"mobility": False})}))

    async def call() -> bool:
        sipp = clean.sipp()
        with sipp.phone("102", live.password("102")):
            result = await asyncio.to_thread(sipp.call, "101", live.password("101"), "102",
                                             hold_seconds=1)
        return bool(result.connected)

    async def go() -> dict[str, int]:
        service = MonitorService(config)
        task = asyncio.create_task(service.run())
        try:
            deadline = time.monotonic() + 20
            while not service.supervisor.connected:
                assert not task.done() and time.monotonic() < deadline, \
                    service.supervisor.last_error
                await asyncio.sleep(0.05)
            point_to(httpd.server_address[1])
            assert await call()
            for _ in range(60):
                if paths:
                    break
                await asyncio.sleep(0.05)
            for port in (silent.getsockname()[1], down):
                point_to(port)
                assert await call()  # the call never waits on the notification
            assert service.popups is not None
            for _ in range(60):
                if not service.popups.status()["pending"]:
                    break
                await asyncio.sleep(0.05)
            return service.popups.status()
        finally:
            service.stop()
            await asyncio.wait_for(task, 10)

    try:
        counts = asyncio.run(go())
    finally:
        live.store.change_preferences("102", lambda p: p.model_copy(
            update={"popup_url": None, "popup_http": False}))
        httpd.shutdown()
        httpd.server_close()
        silent.close()
    assert paths == ["/call?n=101&short=01&t=internal"]
    assert counts == {"sent": 1, "failed": 2, "refused": 0, "dropped": 0, "pending": 0}

# --- call-waiting beep ----------------------------------------------------------------------

def test_a_second_call_beeps_into_the_call_the_user_is_on(clean: Services) -> None:
    live = clean.live

    async def cli(command: str) -> str:
        async with live.console() as ami:
            return await ami.command(command)

    # Asterisk's own account of what ChanSpy did, in a log file of this test (verbose(3):
    # the channel's level raises Asterisk's; `core set verbose` from the console would set
    # only that console's)
    asyncio.run(cli("logger add channel services-beep verbose(3)"))
    sipp = clean.sipp()
    try:
        with sipp.phone("102", live.password("102"), calls=2):
            first: dict[str, object] = {}
            talk = threading.Thread(target=lambda: first.update(call=sipp.call(
                "100", live.password("100"), "102", hold_seconds=7)))
            talk.start()
            time.sleep(3)  # 100 and 102 are talking
            second = sipp.call("101", live.password("101"), "102", hold_seconds=1)
            talk.join()
    finally:
        asyncio.run(cli("logger remove channel services-beep"))
    assert second.connected and first["call"].connected  # type: ignore[attr-defined]
    (log,) = live.lab.dir.rglob("services-beep")
    lines = log.read_text(errors="replace").splitlines()
    # the user's bridged channel of the first call, never the second call's ringing one
    spied = [line for line in lines if "app_chanspy.c: Spying on channel PJSIP/102-" in line]
    played = [line for line in lines if "Playing 'beep" in line]
    assert len(spied) == 1 and len(played) == 1, (spied, played)
    assert spied[0][:25] <= played[0][:25]  # whispering before the beep starts


# --- hotline ---------------------------------------------------------------------------------

def test_hotline_calls_its_number_after_the_delay_of_silence(clean: Services) -> None:
    live = clean.live
    live.store.change_preferences("101", lambda p: p.model_copy(update={
        "hotline": Hotline(number="102", delay=2)}))
    sipp = clean.sipp()
    try:
        with sipp.phone("102", live.password("102")) as bruno:
            started = time.time()
            result = sipp.call("101", live.password("101"), "*50", hold_seconds=1)
            bruno.uas.wait(timeout=20)
            (invite,) = invites(bruno.uas.messages())
    finally:
        live.store.change_preferences("101", lambda p: p.model_copy(update={"hotline": None}))
    assert result.connected, result.run.describe()
    # dial tone first (early sound_files, unanswered), the hotline number after 2 s of silence
    assert any(m.status == 183 for m in result.run.messages)
    assert invite.time is not None and invite.time - started >= 1.8


# --- missed calls -----------------------------------------------------------------------------

def test_a_missed_call_queues_exactly_one_mail(clean: Services) -> None:
    live = clean.live
    live.store.change_preferences("102", lambda p: p.model_copy(update={
        "internal": p.internal.model_copy(update={"missed_call_email": True,
                                                   "mobility": False})}))
    before = len(clean.spool.pending())
    sipp = clean.sipp()
    with sipp.phone("102", live.password("102"), behaviour="ignore"):
        result = sipp.call("101", live.password("101"), "102", cancel_after=3)
    assert not result.connected
    deadline = time.monotonic() + 5
    while len(clean.spool.pending()) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    pending = clean.spool.pending()
    assert len(pending) == before + 1
    message = pending[-1]
    assert message.to == "bruno.lefevre@acme.fr"
    assert message.call["caller_number"] == "101" and message.call["user"] == "102"



def test_a_call_to_an_offline_phone_is_missed_too(clean: Services) -> None:
    live = clean.live
    live.store.change_preferences("102", lambda p: p.model_copy(update={
        "internal": p.internal.model_copy(update={"missed_call_email": True,
                                                   "mobility": False})}))
    before = len(clean.spool.pending())
    # 102 has no phone registered: its mailbox answers at once
    result = clean.sipp().call("101", live.password("101"), "102", hold_seconds=1)
    assert result.connected
    deadline = time.monotonic() + 5
    while len(clean.spool.pending()) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(clean.spool.pending()) == before + 1
