"""The whole site: every WMS menu in one model, and the rules that span sections."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Self

from pydantic import ValidationInfo, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from wildix_ast.model.common import Srtp
from wildix_ast.model.dialplan_rules import dialplan_errors
from wildix_ast.model.references import reference_errors
from wildix_ast.model.routing import routing_errors
from wildix_ast.model.sections import Sections
from wildix_ast.model.users import User


def _srtp_errors(site: Sections) -> list[InitErrorDetails]:
    """A group cannot require SRTP on a site without TLS: SDES keys never travel over UDP
    or TCP, so every call of its phones would be refused."""
    if site.system.sip_rtp.tls:
        return []
    return [{"type": PydanticCustomError("srtp", "srtp: required needs TLS on the site "
                                         "(system.sip_rtp.tls_certificate and tls_private_key)"
                                         ": SDES keys are never sent over UDP or TCP"),
             "loc": ("groups", i, "srtp"), "input": group.srtp}
            for i, group in enumerate(site.groups) if group.srtp is Srtp.REQUIRED]


STORED_UNCHECKED = "stored_unchecked"
"""A validation context key: skip the rules across sections (see `Site._cross_checks`)."""


class Site(Sections):
    """A PBX as the WMS administrator sees it: its sections and the rules that span them."""

    @model_validator(mode="wrap")
    @classmethod
    def _cross_checks(cls, data: object, handler: Callable[[object], Site],
                      info: ValidationInfo) -> Site:
        if isinstance(info.context, dict) and info.context.get(STORED_UNCHECKED):
            # the store's own rows, read by a command that checks the site it writes
            # whole (a directory sync): the rules across sections ran when they were
            # written and run again on what is written next
            return handler(data)
        try:
            site = handler(data)
        except ValidationError as invalid:
            # Report the cross-section problems of the valid parts too: a person fixes
            # everything in one pass instead of discovering duplicates one run later.
            extra = list(reference_errors(data, cls)) if isinstance(data, dict) else []
            if not extra:
                raise
            known = {tuple(e["loc"]) for e in invalid.errors()}
            errors = [*invalid.errors(), *(e for e in extra if tuple(e["loc"]) not in known)]
            raise ValidationError.from_exception_data(
                cls.__name__, errors) from None  # type: ignore[arg-type]
        problems = [*reference_errors(site, cls), *routing_errors(site), *dialplan_errors(site),
                    *_srtp_errors(site)]
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return site

    def user_by_extension(self, extension: str) -> User | None:
        return next((u for u in self.users if u.extension == extension), None)

    def with_ports(self, *, sip: int, rtp_start: int, rtp_end: int, ami: int,
                   bind: str = "127.0.0.1", tls: int | None = None,
                   agi: int | None = None) -> Self:
        """The same site listening elsewhere (the lab runs it on free loopback ports); `agi`:
        where its dialplan asks the FastAGI service (on loopback)."""
        update: dict[str, object] = {"bind_address": IPv4Address(bind), "sip_port": sip,
                                     "rtp_start": rtp_start, "rtp_end": rtp_end}
        if tls is not None:
            update["tls_port"] = tls
        sip_rtp = self.system.sip_rtp.model_copy(update=update)
        manager = self.system.manager.model_copy(update={"port": ami})
        system = self.system.model_copy(update={"sip_rtp": sip_rtp, "manager": manager})
        if agi is not None:
            fastagi = system.fastagi.model_copy(update={"host": IPv4Address("127.0.0.1"),
                                                        "port": agi})
            system = system.model_copy(update={"fastagi": fastagi})
        return self.model_copy(update={"system": system})
