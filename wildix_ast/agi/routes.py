"""The routes `wildix-ast agi serve` answers: thin adapters from an AGI request to the pure
functions that decide (each unit-tested without Asterisk).

The user-preference routes (forwarding, reject, mobility per call class) join here once the
routing work's call classes and the store's preference tables exist; they will be
`Route.blocking` adapters over pure functions of (preferences, call) -> Decision.
"""

from __future__ import annotations

from wildix_ast.agi.protocol import AgiRequest
from wildix_ast.agi.server import Decision, Route
from wildix_ast.agi.services import service_routes
from wildix_ast.missed_calls import MailSpool, default_spool
from wildix_ast.popup_url import PopupCall, expand
from wildix_ast.store import Store

POPUP_VARIABLE = "WILDIX_POPUP_URL"


def _arg(request: AgiRequest, index: int) -> str:
    return request.args[index] if index < len(request.args) else ""


def popup(request: AgiRequest) -> Decision:
    """`AGI(agi://.../popup,TEMPLATE,USERNUM,USERNAME,CALLTYPE,TAGS)` sets WILDIX_POPUP_URL
    to the template expanded for this call (the caller from the channel's caller ID)."""
    call = PopupCall(
        caller_number=request.callerid,
        caller_name=request.calleridname,
        user_number=_arg(request, 1) or request.extension,
        user_name=_arg(request, 2),
        call_type=_arg(request, 3),
        tags=tuple(tag for tag in _arg(request, 4).split(",") if tag),
    )
    return Decision({POPUP_VARIABLE: expand(_arg(request, 0), call)})


def default_routes(store: Store | None = None,
                   spool: MailSpool | None = None) -> dict[str, Route]:
    """Every route of the service (besides the server's built-in `health`); the routes
    that read or change the store need one."""
    routes = {"popup": Route.of(popup)}
    if store is not None:
        routes.update(service_routes(lambda: store, spool or MailSpool(default_spool())))
    return routes
