"""The whole site: every WMS menu in one model, and the rules that span sections."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, Self

from pydantic import BaseModel, Field, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from wildix_ast.dialplan import Dialplan
from wildix_ast.groups import DEFAULT_GROUP, Group
from wildix_ast.system import STRICT, System
from wildix_ast.trunks import Trunk, TrunkGroup
from wildix_ast.users import DEFAULT_PROCEDURE, User


class Site(BaseModel):
    """A PBX as the WMS administrator sees it."""

    model_config = STRICT

    system: System = Field(default_factory=System)
    groups: list[Group] = Field(default_factory=lambda: [Group(name=DEFAULT_GROUP)])
    dialplan: Dialplan = Field(default_factory=Dialplan)
    users: list[User] = Field(default_factory=list)
    trunks: list[Trunk] = Field(default_factory=list)
    trunk_groups: list[TrunkGroup] = Field(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _cross_checks(cls, data: object, handler: Callable[[object], Site]) -> Site:
        try:
            site = handler(data)
        except ValidationError as invalid:
            # Report the cross-section problems of the valid parts too: a person fixes
            # everything in one pass instead of discovering duplicates one run later.
            extra = list(_reference_errors(_RawView.of(data))) if isinstance(data, dict) else []
            if not extra:
                raise
            known = {tuple(e["loc"]) for e in invalid.errors()}
            errors = [*invalid.errors(), *(e for e in extra if tuple(e["loc"]) not in known)]
            raise ValidationError.from_exception_data(
                cls.__name__, errors) from None  # type: ignore[arg-type]
        from wildix_ast.routing import routing_errors

        problems = [*_reference_errors(_RawView.of_site(site)), *routing_errors(site)]
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return site

    def user_by_extension(self, extension: str) -> User | None:
        return next((u for u in self.users if u.extension == extension), None)

    def with_ports(self, *, sip: int, rtp_start: int, rtp_end: int, ami: int,
                   bind: str = "127.0.0.1", tls: int | None = None) -> Self:
        """The same site listening elsewhere (the lab runs it on free loopback ports)."""
        update: dict[str, object] = {"bind_address": IPv4Address(bind), "sip_port": sip,
                                     "rtp_start": rtp_start, "rtp_end": rtp_end}
        if tls is not None:
            update["tls_port"] = tls
        sip_rtp = self.system.sip_rtp.model_copy(update=update)
        manager = self.system.manager.model_copy(update={"port": ami})
        system = self.system.model_copy(update={"sip_rtp": sip_rtp, "manager": manager})
        return self.model_copy(update={"system": system})


_CHECKED_USER_FIELDS = ("extension", "office_did", "fax_did", "email", "login", "group",
                        "dialplan", "fax_dialplan")


@dataclass
class _RawView:
    """What the cross-section rules look at, from a valid Site or from raw, partly invalid
    input (values that are not strings are left to the field validators)."""

    groups: list[str | None]
    procedure_list: list[str | None]
    users: list[dict[str, str]]
    echo_test: str
    voicemail: str
    procedures: set[str]

    @classmethod
    def of_site(cls, site: Site) -> _RawView:
        users = [{f: v for f in _CHECKED_USER_FIELDS if isinstance(v := getattr(u, f), str)}
                 for u in site.users]
        return cls([g.name for g in site.groups], [p.name for p in site.dialplan.procedures],
                   users, site.dialplan.echo_test,
                   site.dialplan.voicemail, site.dialplan.procedure_names)

    @classmethod
    def of(cls, data: dict[str, Any]) -> _RawView:
        def records(value: object) -> list[dict[str, Any]]:
            return [r if isinstance(r, dict) else {} for r in value] \
                if isinstance(value, list) else []

        defaults = Dialplan()
        dialplan = data.get("dialplan") if isinstance(data.get("dialplan"), dict) else {}
        assert isinstance(dialplan, dict)
        raw_groups = data.get("groups", [{"name": DEFAULT_GROUP}])
        groups = [g.get("name") if isinstance(g.get("name"), str) else None
                  for g in records(raw_groups)]
        users = [{f: r[f] for f in _CHECKED_USER_FIELDS if isinstance(r.get(f), str)}
                 for r in records(data.get("users"))]
        for user in users:
            user.setdefault("group", DEFAULT_GROUP)
            user.setdefault("dialplan", DEFAULT_PROCEDURE)
            user.setdefault("fax_dialplan", DEFAULT_PROCEDURE)
        procedures = {DEFAULT_PROCEDURE} | {p["name"] for p in records(dialplan.get("procedures"))
                                             if isinstance(p.get("name"), str)}
        echo = dialplan.get("echo_test", defaults.echo_test)
        voicemail = dialplan.get("voicemail", defaults.voicemail)
        procedure_list = [p.get("name") if isinstance(p.get("name"), str) else None
                          for p in records(dialplan.get("procedures"))]
        return cls(groups, procedure_list, users,
                   echo if isinstance(echo, str) else defaults.echo_test,
                   voicemail if isinstance(voicemail, str) else defaults.voicemail, procedures)


def _reference_errors(view: _RawView) -> Iterable[InitErrorDetails]:
    def error(loc: tuple[str | int, ...], message: str) -> InitErrorDetails:
        return {"type": PydanticCustomError("reference", message), "loc": loc, "input": None}

    seen_groups: dict[str, int] = {}
    for i, name in enumerate(view.groups):
        if name is None:
            continue
        if name in seen_groups:
            yield error(("groups", i, "name"),
                        f"group {name!r} already defined at groups[{seen_groups[name]}]")
        seen_groups.setdefault(name, i)

    seen_procedures: dict[str, int] = {}
    for i, name in enumerate(view.procedure_list):
        if name is None:
            continue
        if name == DEFAULT_PROCEDURE:
            yield error(("dialplan", "procedures", i, "name"),
                        f"{name!r} is the built-in procedure; choose another name")
        elif name in seen_procedures:
            yield error(("dialplan", "procedures", i, "name"), f"procedure {name!r} already "
                        f"defined at dialplan.procedures[{seen_procedures[name]}]")
        seen_procedures.setdefault(name, i)

    if view.echo_test == view.voicemail:
        yield error(("dialplan", "voicemail"), "same feature code as dialplan.echo_test")
    numbers = {view.echo_test: "dialplan.echo_test", view.voicemail: "dialplan.voicemail"}
    emails: dict[str, str] = {}
    logins: dict[str, str] = {}
    for i, user in enumerate(view.users):
        here = f"users[{i}]"
        for field in ("extension", "office_did", "fax_did"):
            number = user.get(field)
            if number is None:
                continue
            if number in numbers:
                yield error(("users", i, field), f"{number} already used by {numbers[number]}")
            else:
                numbers[number] = f"{here}.{field}"
        for field, seen in (("email", emails), ("login", logins)):
            value = user.get(field)
            if value is None:
                continue
            key = value.lower()
            if key in seen:
                yield error(("users", i, field), f"already used by {seen[key]}")
            else:
                seen[key] = here
        group = user.get("group")
        if group is not None and group not in seen_groups:
            yield error(("users", i, "group"), f"group {group!r} is not defined in groups")
        for field in ("dialplan", "fax_dialplan"):
            procedure = user.get(field)
            if procedure is not None and procedure not in view.procedures:
                yield error(("users", i, field), f"dialplan procedure {procedure!r} is not "
                            "defined in dialplan.procedures")
