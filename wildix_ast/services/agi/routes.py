"""The routes `wildix-ast agi serve` answers: thin adapters from an AGI request to the pure
functions that decide (each unit-tested without Asterisk).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from wildix_ast.calls import variables as v
from wildix_ast.calls.call_user import CALL_USER_ROUTE, IncomingCall, decide
from wildix_ast.calls.missed_calls import MailSpool, default_spool
from wildix_ast.calls.popup_url import PopupCall, expand
from wildix_ast.model.users import User
from wildix_ast.services.agi.handset_routes import handset_routes
from wildix_ast.services.agi.protocol import AgiRequest
from wildix_ast.services.agi.server import Decision, Route
from wildix_ast.services.agi.service_routes import service_routes
from wildix_ast.services.agi.voicemail_logins import (
    LoginGuard,
    default_path,
    handset_logins_path,
)
from wildix_ast.store import Store, open_store

#: A call-user decision slower than this gets the safe answer (the phone rings directly).
CALL_USER_TIMEOUT = 0.5
MAX_CACHED_USERS = 100_000
log = logging.getLogger(__name__)
UserLookup = Callable[[str], User | None]



def _arg(request: AgiRequest, index: int) -> str:
    return request.args[index] if index < len(request.args) else ""


def popup(request: AgiRequest) -> Decision:
    """`AGI(agi://.../popup,TEMPLATE,USERNUM,USERNAME,CALLTYPE,TAGS)` sets variables.POPUP_URL
    to the template expanded for this call (the caller from the channel's caller ID)."""
    call = PopupCall(
        caller_number=request.callerid,
        caller_name=request.calleridname,
        user_number=_arg(request, 1) or request.extension,
        user_name=_arg(request, 2),
        call_type=_arg(request, 3),
        tags=tuple(tag for tag in _arg(request, 4).split(",") if tag),
    )
    return Decision({v.POPUP_URL: expand(_arg(request, 0), call)})


def call_user(lookup: UserLookup) -> Callable[[AgiRequest], Decision]:
    """`AGI(agi://.../call-user,EXTENSION,CALLTYPE)`: the preferences of the called user
    for this call (the caller from the channel's caller ID), as channel variables."""
    def handler(request: AgiRequest) -> Decision:
        call = IncomingCall(call_type=_arg(request, 1), caller=request.callerid,
                            caller_name=request.calleridname)
        return Decision(decide(lookup(_arg(request, 0)), call))

    return handler


class StoreLookup:
    """`user_by_extension` of the store at `location`, opened on the first call that needs
    it (a service answering only `health` never touches the store) and again after a
    failure: a database that was down is used as soon as it is back.

    Users are kept in memory while the store's revision stays the same: every call reads
    the revision (one cheap query), and any change of the store (an import, `user set`, a
    feature code) grows it, so the next call reads the user again."""

    def __init__(self, location: str | None) -> None:
        self.location = location
        self._store: Store | None = None
        self._revision: Callable[[], int] | None = None
        self._opening = threading.Lock()
        self._cached: dict[str, User | None] = {}
        self._cached_at = -1
        self._caching = threading.Lock()

    def _open(self) -> tuple[Store, Callable[[], int]]:
        with self._opening:
            if self._store is None or self._revision is None:
                store = open_store(self.location)
                self._revision = store.revision_reader()
                self._store = store
            return self._store, self._revision

    def __call__(self, extension: str) -> User | None:
        store, read_revision = self._open()
        revision = read_revision()  # before the user: a change meanwhile is seen next call
        with self._caching:
            if revision != self._cached_at:
                self._cached, self._cached_at = {}, revision
            elif extension in self._cached:
                return self._cached[extension]
        user = store.user_by_extension(extension)
        with self._caching:
            if revision == self._cached_at and len(self._cached) < MAX_CACHED_USERS:
                self._cached[extension] = user
        return user

    def store(self) -> Store:
        """The store, opened now if it is not yet (the services' routes change it: each
        change grows the revision, so the cached users are dropped on the next call)."""
        return self._open()[0]

    def check(self) -> None:
        """Read the store's revision now (no cache): raises when the store cannot be read,
        for the health route and the watchdog."""
        self._open()[1]()

    def warm_up(self) -> None:
        """Open the store and run one look-up now: the first call must not pay for loading
        the database layer (hundreds of milliseconds, past the route's timeout). A store
        that cannot be opened is logged; calls then take the dialplan's direct path until
        it can."""
        try:
            self("")
        except Exception as e:  # any failure here is reported, never fatal
            log.error("FastAGI: the store %s cannot be read (%s); calls to users ring them "
                      "directly until it can", self.location or "(default)", e)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def default_routes(lookup: UserLookup | None = None,
                   spool: MailSpool | None = None,
                   guard: LoginGuard | None = None,
                   handset_guard: LoginGuard | None = None) -> dict[str, Route]:
    """Every route of the service (besides the server's built-in `health`); `lookup` finds
    a user by extension (the store's `user_by_extension`), for `call-user`; a StoreLookup
    also gives the services' routes (feature codes, mobility, hotline, missed calls,
    handset login)."""
    routes = {"popup": Route.of(popup)}
    if lookup is not None:
        routes[CALL_USER_ROUTE] = Route.blocking(call_user(lookup), timeout=CALL_USER_TIMEOUT)
    if isinstance(lookup, StoreLookup):
        routes.update(service_routes(lookup.store, spool or MailSpool(default_spool()),
                                     guard or LoginGuard(default_path())))
        routes.update(handset_routes(lookup.store, handset_guard or LoginGuard(
            handset_logins_path(), event="Handset")))
    return routes
