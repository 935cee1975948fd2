"""WMS 'Générer un appel': a real SIP test call between two users of the lab, played by
SIPp phones that register with the users' stored SIP passwords."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wildix_ast.apply.pipeline import Compiled, compile_site
from wildix_ast.errors import WildixError
from wildix_ast.lab.instance import Lab
from wildix_ast.model.site import Site
from wildix_ast.store.vault import SecretVault

if TYPE_CHECKING:
    from wildix_ast.lab.sipp import CallResult


@dataclass
class TestCallResult:
    steps: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(ok for _, ok, _ in self.steps)

    @property
    def summary(self) -> str:
        failed = [f"{step}: {detail}" for step, ok, detail in self.steps if not ok]
        return "; ".join(failed) if failed else f"{len(self.steps)} steps passed"

    def add(self, step: str, ok: bool, detail: str) -> bool:
        self.steps.append((step, ok, detail))
        return ok


def test_call(lab: Lab, site: Site, vault: SecretVault, caller: str, callee: str, *,
              hold: float = 2.0) -> TestCallResult:
    """Register both users, call, answer, hold, hang up; then no channel may be left."""
    from wildix_ast.lab.sipp import SippDriver, SippError

    compiled = compile_site(site, vault, lab.target())
    users = {u.extension: u for u in compiled.site.users}
    if caller not in users or not users[caller].type.has_phone:
        raise WildixError(f"{caller} is not the extension of a user with a phone")
    caller_pw = users[caller].sip_password
    assert caller_pw is not None
    result = TestCallResult()
    driver = SippDriver(lab.ports.sip, work_dir=lab.dir / "sipp" / time.strftime("%Y%m%d-%H%M%S"))
    callee_user = users.get(callee)
    try:
        if callee_user is None or not callee_user.type.has_phone:
            # A feature code (echo test *43, voicemail *97...): Asterisk itself answers.
            call = driver.call(caller, caller_pw, callee, hold_seconds=hold)
            result.add(f"call {caller} → {callee}", call.success and call.connected,
                       _describe(call, hold))
        else:
            callee_pw = callee_user.sip_password
            assert callee_pw is not None
            with driver.phone(callee, callee_pw, behaviour="answer") as phone:
                result.add(f"register {callee}", True, f"200 OK ({callee_user.name})")
                call = driver.call(caller, caller_pw, callee, hold_seconds=hold)
                result.add(f"call {caller} → {callee}", call.success, _describe(call, hold))
                answered = phone.uas.wait(timeout=10)
                result.add(f"{callee} rings and answers", answered.answered >= 1,
                           f"{answered.invites} INVITE, {answered.answered} answered, "
                           f"{answered.byes} BYE")
    except SippError as error:
        result.add("SIP", False, str(error).splitlines()[0])
    left = asyncio.run(_channels_left(compiled))
    result.add("no channel left", left == 0, f"{left} active channel(s) on Asterisk")
    return result


def _describe(call: CallResult, hold: float) -> str:
    statuses = " ".join(str(s) for s in call.statuses)
    return (f"INVITE answered {call.final_status} (responses: {statuses}), held {hold:g} s, "
            f"hung up by {call.hangup_by or 'nobody'} in {call.duration:.1f} s")


async def _channels_left(compiled: Compiled) -> int:
    async with compiled.ami() as ami:
        for _ in range(20):
            count = await ami.channels_count()
            if count == 0:
                return 0
            await asyncio.sleep(0.1)
        return count
