"""The bans in force, kept in the AMI service's state folder (`bans.json`) and changed by two
kinds of process: the service (a ban, an expiry) and `wildix-ast security unban`.

Every change is a read-modify-write under one lock (`.bans.lock`, flock) with an atomic
rename: whoever writes second starts from what the first wrote, so neither loses the other's
change (before, the service wrote its own copy whole and could undo an `unban` made since
it last read the file). The firewall has a lock of its own (`.firewall.lock`): iptables takes
tens of milliseconds to seconds, and the service's event loop takes the bans lock, so it must
never wait behind an iptables run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from wildix_ast.errors import ServiceError
from wildix_ast.files import write_atomic
from wildix_ast.services.ami.security import Ban, SecurityState, unban

BANS_FILE = "bans.json"
Bans = dict[str, Ban]


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def bans_lock(state_dir: Path) -> contextlib.AbstractContextManager[None]:
    return _flock(state_dir / ".bans.lock")


def firewall_lock(state_dir: Path) -> contextlib.AbstractContextManager[None]:
    """Held around every change of the bans' firewall chain (the service's rewrite, its
    removal at a clean stop, `unban`'s rewrite): a chain removed by one is never re-created
    half (unhooked) by another."""
    return _flock(state_dir / ".firewall.lock")


def load_bans(state_dir: Path) -> Bans:
    try:
        data = json.loads((state_dir / BANS_FILE).read_text(encoding="utf-8"))
        return {b["address"]: Ban.from_json(b) for b in data.get("bans", [])}
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ServiceError(f"{state_dir / BANS_FILE} is not a bans file: {e}") from None


def save_bans(state_dir: Path, bans: Mapping[str, Ban]) -> None:
    text = json.dumps({"bans": [b.to_json() for b in sorted(bans.values(),
                                                              key=lambda b: b.since)]},
                      indent=2)
    # the owner's and the folder's group's (deployed: the bans group, whose provisioning
    # server reads and writes it too); nobody else's
    write_atomic(state_dir / BANS_FILE, text + "\n", mode=0o640)


def update_bans(state_dir: Path, change: Callable[[Bans], Bans]) -> Bans:
    """The bans after `change` (given the file's current bans), written back when changed;
    one read-modify-write under the lock."""
    with bans_lock(state_dir):
        current = load_bans(state_dir)
        changed = change(dict(current))
        if changed != current:
            save_bans(state_dir, changed)
        return changed


def lift_ban(state_dir: Path, address: str) -> bool:
    """`unban`: remove one ban from the state folder; False if it was not banned there.
    ValueError if `address` is not an IP address."""
    lifted = False

    def without(bans: Bans) -> Bans:
        nonlocal lifted
        state, lifted = unban(SecurityState(bans=bans), address)
        return dict(state.bans)

    update_bans(state_dir, without)
    return lifted
