"""The whole site: every WMS menu in one model, and the rules that span sections."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Self

from pydantic import BaseModel, Field, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from wildix_ast.dialplan import Dialplan
from wildix_ast.groups import DEFAULT_GROUP, Group
from wildix_ast.system import STRICT, System
from wildix_ast.users import User


class Site(BaseModel):
    """A PBX as the WMS administrator sees it."""

    model_config = STRICT

    system: System = Field(default_factory=System)
    groups: list[Group] = Field(default_factory=lambda: [Group(name=DEFAULT_GROUP)])
    dialplan: Dialplan = Field(default_factory=Dialplan)
    users: list[User] = Field(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _cross_checks(cls, data: object, handler: Callable[[object], Site]) -> Site:
        site = handler(data)
        errors = list(site._reference_errors())
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return site

    def _reference_errors(self) -> Iterable[InitErrorDetails]:
        def error(loc: tuple[str | int, ...], message: str) -> InitErrorDetails:
            return {"type": PydanticCustomError("reference", message), "loc": loc, "input": None}

        seen_groups: dict[str, int] = {}
        for i, group in enumerate(self.groups):
            if group.name in seen_groups:
                first = seen_groups[group.name]
                yield error(("groups", i, "name"),
                            f"group {group.name!r} already defined at groups[{first}]")
            seen_groups.setdefault(group.name, i)

        features = {self.dialplan.echo_test: "dialplan.echo_test",
                    self.dialplan.voicemail: "dialplan.voicemail"}
        if len(features) < 2:
            yield error(("dialplan", "voicemail"), "same feature code as dialplan.echo_test")
        procedures = self.dialplan.procedure_names
        numbers: dict[str, str] = dict(features)
        emails: dict[str, str] = {}
        logins: dict[str, str] = {}
        for i, user in enumerate(self.users):
            here = f"users[{i}]"
            for field in ("extension", "office_did", "fax_did"):
                value = getattr(user, field)
                if value is None:
                    continue
                if value in numbers:
                    yield error(("users", i, field), f"{value} already used by {numbers[value]}")
                else:
                    numbers[value] = f"{here}.{field}"
            for field, value, seen in (("email", user.email, emails),
                                       ("login", user.login, logins)):
                if value is None:
                    continue
                key = value.lower()
                if key in seen:
                    yield error(("users", i, field), f"already used by {seen[key]}")
                else:
                    seen[key] = here
            if user.group not in seen_groups:
                yield error(("users", i, "group"),
                            f"group {user.group!r} is not defined in groups")
            for field in ("dialplan", "fax_dialplan"):
                if getattr(user, field) not in procedures:
                    yield error(("users", i, field), f"dialplan procedure {getattr(user, field)!r} "
                                "is not defined in dialplan.procedures")

    def user_by_extension(self, extension: str) -> User | None:
        return next((u for u in self.users if u.extension == extension), None)

    def with_ports(self, *, sip: int, rtp_start: int, rtp_end: int, ami: int,
                   bind: str = "127.0.0.1") -> Self:
        """The same site listening elsewhere (the lab runs it on free loopback ports)."""
        sip_rtp = self.system.sip_rtp.model_copy(update={
            "bind_address": bind, "sip_port": sip, "rtp_start": rtp_start, "rtp_end": rtp_end})
        manager = self.system.manager.model_copy(update={"port": ami})
        system = self.system.model_copy(update={"sip_rtp": sip_rtp, "manager": manager})
        return self.model_copy(update={"system": system})
