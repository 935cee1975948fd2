"""Several Asterisk nodes on one PostgreSQL store (issue 22, docs/scaling.md): the realtime
objects an apply changed, expired from the sorcery memory cache of every other node.

The rows are written once (all nodes read the same tables); each node keeps its own cache,
so each must forget the changed objects. The node the apply targets expires them through
its console like before (`target._expire`); every other node listed in
`system.realtime.nodes` is asked through its AMI with the nodes' account
(`SorceryMemoryCacheExpireObject`, class `system`; its secret in the vault).

A node that does not answer does not fail the apply (the rows are right, the other nodes are
right): the apply reports it, and its objects still to expire are kept in
`<etc>/.wildix-ast/nodes-pending.json` (written atomically, beside the journal). The next
apply on any target of that configuration folder, or `wildix-ast realtime expire`, sends
them again; a node that restarted in between has an empty cache anyway, and expiring an
object a node does not hold is harmless."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from wildix_ast.ami import AmiClient
from wildix_ast.asterisk.sorcery import CACHE_BY_TABLE
from wildix_ast.errors import AmiError, ApplyError
from wildix_ast.files import write_atomic

PENDING_FILE = "nodes-pending.json"
#: A cache entry's key as it goes into an AMI field: no line break, no colon.
_CACHE_KEY = re.compile(r"[A-Za-z0-9_.+@-]{1,80}")
#: What Asterisk answers for an object its cache does not hold: nothing to expire.
_NOT_CACHED = "could not be expired"
#: Seconds a node has to answer (login, then each action): a dead node must not hold the
#: apply long, it is caught up later.
NODE_TIMEOUT = 2.0


@dataclass(frozen=True)
class NodeLink:
    """How apply reaches one other node's AMI."""

    name: str
    host: str
    port: int


@dataclass
class NodeExpiry:
    """What the other nodes did: node -> cache entries expired; node -> why it was missed
    (its entries are pending)."""

    expired: dict[str, list[str]] = field(default_factory=dict)
    missed: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"expired": self.expired, "missed": self.missed}


def cache_entries(rows: Iterable[str]) -> list[str]:
    """The sorcery memory cache entries ("cache/key") of realtime rows ("table/key");
    voicemail's rows have none (it reads its table on each use)."""
    entries: list[str] = []
    for row in rows:
        table, _, key = row.partition("/")
        cache = CACHE_BY_TABLE.get(table)
        if cache is None:
            continue
        if not _CACHE_KEY.fullmatch(key):  # it goes into an AMI field
            raise ApplyError(f"refusing to expire the realtime object {key!r}")
        entries.append(f"{cache}/{key}")
    return entries


class Nodes:
    """The other nodes of a configuration folder's site and what each still has to expire."""

    def __init__(self, links: list[NodeLink], username: str, secret: str,
                 state_dir: Path) -> None:
        self.links = links
        self.username = username
        self.secret = secret
        self.pending_path = state_dir / PENDING_FILE

    def pending(self) -> dict[str, list[str]]:
        """node -> cache entries a node missed, kept until it takes them."""
        try:
            data = json.loads(self.pending_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise ApplyError(f"{self.pending_path}: unreadable ({e}); remove it and run "
                             "`wildix-ast realtime expire --all`") from e
        return {str(node): [str(e) for e in entries] for node, entries in data.items()}

    def _keep(self, pending: dict[str, list[str]]) -> None:
        if pending:
            self.pending_path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.pending_path, json.dumps(pending, indent=1, sort_keys=True))
        else:
            self.pending_path.unlink(missing_ok=True)

    async def expire(self, rows: Iterable[str], say: Callable[[str, str], None],
                     *, whole: bool = False) -> NodeExpiry:
        """Expire `rows`' objects ("table/key") and whatever each node still owes on every
        other node, all nodes at once; `whole`: every object of the three caches (a node
        whose pending list was lost). Records what is missed."""
        entries = cache_entries(rows)
        pending = self.pending()
        result = NodeExpiry()
        wanted = {link.name: sorted(set(pending.get(link.name, [])) | set(entries))
                  for link in self.links}
        outcomes = await asyncio.gather(*(self._one(link, wanted[link.name], whole)
                                          for link in self.links))
        for link, problem in zip(self.links, outcomes, strict=True):
            if problem is None:
                pending.pop(link.name, None)
                if wanted[link.name] or whole:
                    result.expired[link.name] = (["*"] if whole else wanted[link.name])
            else:
                result.missed[link.name] = problem
                pending[link.name] = wanted[link.name]
        self._keep({node: e for node, e in pending.items()
                    if node in {link.name for link in self.links}})
        if result.expired:
            say("nodes", f"expired on {', '.join(sorted(result.expired))}")
        for node, problem in sorted(result.missed.items()):
            say("nodes", f"NODE {node} NOT REACHED ({problem}): its cached objects are "
                         "kept pending; the next apply or `wildix-ast realtime expire` "
                         "sends them")
        return result

    async def _one(self, link: NodeLink, entries: list[str], whole: bool) -> str | None:
        """Expire `entries` on one node; None, or why it failed."""
        if not entries and not whole:
            return None
        client = AmiClient(link.host, link.port, self.username, self.secret,
                           timeout=NODE_TIMEOUT)
        try:
            await asyncio.wait_for(client.connect(), NODE_TIMEOUT * 2)
            try:
                if whole:
                    for cache in sorted(set(CACHE_BY_TABLE.values())):
                        await client.action("SorceryMemoryCacheExpire", Cache=cache)
                for entry in entries:
                    cache, _, key = entry.partition("/")
                    answer = await client.action("SorceryMemoryCacheExpireObject",
                                                 check=False, Cache=cache, Object=key)
                    if (answer.get("Response") != "Success"
                            and _NOT_CACHED not in str(answer.get("Message", ""))):
                        return (f"{entry}: {answer.get('Message') or answer.get('Response')}"
                                .strip())
            finally:
                await client.close()
        except (AmiError, OSError, TimeoutError) as e:
            return str(getattr(e, "message", e) or type(e).__name__)
        return None
