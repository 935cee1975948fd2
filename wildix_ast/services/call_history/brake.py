"""The toll-fraud brake: computed by the collector from the live records, enforced by the
dialplan from a flag file (`calls.call_record.brake_check`).

After each pass that assembled calls, the callers of the outgoing ones are checked: for a
braked class, a user's outside calls (those that reached a trunk: not refused) and billed
minutes in the sliding window (`TollLimit.window_minutes`) since the last admin clear are
compared with the user's limit (its own, else its group's, else the site's). At or over the
limit: the flag `<spool>/wildix-brake/<extension>-<class>` is made with the time the brake
lifts by itself (now + the window) as its modification time, and a security event is
logged. The next call of that class from that user gets 403, while other classes go out.
`wildix-ast cdr brake clear USER` removes the flags and records the clear: only calls
after it count again.

Fail-open, on purpose: the call path only stats a local file. When the collector is down,
no new brake is set (and a set one still holds until its time): outside calls keep going
out, held by the class ACLs and the simultaneous-call limits, which do not depend on it.
Refusing every outside call because a history service is down would stop the business
(emergency calls are never braked either way)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from wildix_ast.calls.call_record import brake_flag
from wildix_ast.errors import WildixError
from wildix_ast.mail.queue import enqueue_mail
from wildix_ast.model.call_classes import CallClass
from wildix_ast.model.call_history import LimitScope, TollLimit
from wildix_ast.services.call_history.spool import Spool

security = logging.getLogger("wildix_ast.security")
REFUSED = ("refused_class", "over_limit")


@dataclass(frozen=True)
class Brake:
    extension: str
    call_class: str
    until: float
    reason: str


def effective_limit(limits: Iterable[TollLimit], extension: str, group: str,
                    call_class: str) -> TollLimit | None:
    """The user's own limit for the class, else its group's, else the site's."""
    found: dict[LimitScope, TollLimit] = {}
    for limit in limits:
        if limit.call_class.value != call_class:
            continue
        if (limit.scope is LimitScope.USER and limit.name == extension) or \
                (limit.scope is LimitScope.GROUP and limit.name == group) or \
                limit.scope is LimitScope.SITE:
            found[limit.scope] = limit
    for scope in (LimitScope.USER, LimitScope.GROUP, LimitScope.SITE):
        if scope in found:
            return found[scope]
    return None


class BrakeKeeper:
    def __init__(self, folder: Path, limits: list[TollLimit], groups: dict[str, str],
                 alert_to: str | None = None, mail_root: Path | None = None) -> None:
        self.folder = folder
        self.limits = limits
        self.groups = groups
        """extension -> ACL group."""
        self.alert_to = alert_to
        """The address a new brake's alert is mailed to (`CallHistory.alert_email`)."""
        self.mail_root = mail_root
        """The mail queue's folder (None: the queue's default)."""

    def check(self, spool: Spool, users: Iterable[tuple[str, str]],
              now: float | None = None) -> list[Brake]:
        """Check (extension, class) pairs that just had calls; the brakes set."""
        moment = time.time() if now is None else now
        braked = []
        for extension, call_class in set(users):
            if not extension.isdigit() or call_class not in {c.value for c in CallClass}:
                continue
            limit = effective_limit(self.limits, extension, self.groups.get(extension, ""),
                                    call_class)
            if limit is None:
                continue
            window = limit.window_minutes * 60.0
            since = max(moment - window, spool.brake_cleared(extension, call_class))
            calls, seconds = spool.outside_usage(extension, call_class, since, REFUSED)
            over = []
            if limit.calls is not None and calls >= limit.calls:
                over.append(f"{calls} calls >= {limit.calls}")
            if limit.minutes is not None and seconds / 60 >= limit.minutes:
                over.append(f"{seconds / 60:.1f} min >= {limit.minutes}")
            if not over:
                continue
            brake = Brake(extension, call_class, moment + window,
                          f"{' and '.join(over)} in {limit.window_minutes} min")
            self.set(brake)
            braked.append(brake)
        return braked

    def flag(self, extension: str, call_class: str) -> Path:
        return self.folder / brake_flag(extension, call_class)

    def set(self, brake: Brake) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # Asterisk (another user) stats the flags: it needs to search the folder
        os.chmod(self.folder, 0o755)
        path = self.flag(brake.extension, brake.call_class)
        fresh = not path.exists()
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.close(descriptor)
        os.utime(path, (brake.until, brake.until))
        if fresh:
            security.warning("toll-fraud brake: user %s may not call %s any more (%s) until "
                             "%s or `wildix-ast cdr brake clear %s`", brake.extension,
                             brake.call_class, brake.reason,
                             time.strftime("%F %T", time.gmtime(brake.until)),
                             brake.extension)
            self.alert(brake)

    def alert(self, brake: Brake) -> None:
        """Mail the brake's alert through the PBX's one mail queue, once per brake (the
        queue key names the user, the class and when it lifts). The brake holds whatever
        happens to the mail: a queue that cannot take it is logged, never raised."""
        if self.alert_to is None:
            return
        until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(brake.until))
        body = (f"The toll-fraud brake stopped user {brake.extension} from making "
                f"{brake.call_class} calls: {brake.reason}.\n\n"
                f"Further {brake.call_class} calls from {brake.extension} are refused until "
                f"{until}, or until an administrator runs\n"
                f"  wildix-ast cdr brake clear {brake.extension}\n\n"
                "Other call classes still go out. Check the user's recent calls with\n"
                f"  wildix-ast cdr list --user {brake.extension}\n")
        try:
            enqueue_mail(self.alert_to,
                         f"Toll-fraud brake: {brake.extension} stopped on {brake.call_class}",
                         body, kind="fraud_alert", root=self.mail_root,
                         key=f"fraud-{brake.extension}-{brake.call_class}-{int(brake.until)}",
                         details={"user": brake.extension, "class": brake.call_class})
        except (WildixError, OSError) as exc:
            security.error("toll-fraud brake on %s/%s: its alert mail could not be queued: "
                           "%s", brake.extension, brake.call_class, exc)

    def active(self, now: float | None = None) -> list[Brake]:
        moment = time.time() if now is None else now
        found: list[Brake] = []
        if not self.folder.is_dir():
            return found
        for path in sorted(self.folder.iterdir()):
            extension, _, call_class = path.name.partition("-")
            until = path.stat().st_mtime
            if until > moment:
                found.append(Brake(extension, call_class, until, ""))
        return found


def clear(folder: Path, spool: Spool, extension: str, call_class: str | None,
          now: float | None = None) -> list[str]:
    """Lift a user's brakes (one class, or all): the classes cleared."""
    moment = time.time() if now is None else now
    classes = [call_class] if call_class else [c.value for c in CallClass]
    cleared = []
    for name in classes:
        spool.clear_brake(extension, name, moment)
        path = folder / brake_flag(extension, name)
        if path.exists():
            path.unlink()
            cleared.append(name)
    if cleared:
        security.warning("toll-fraud brake cleared by an administrator: user %s, %s",
                         extension, ", ".join(cleared))
    return cleared
