"""Several nodes on one PostgreSQL store (issue 22): the nodes in the settings and the
store, no AMI account for the nodes, the console given to the follower's group, and what a
node's expiry follower accepts from the log."""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from pydantic import ValidationError

from wildix_ast.apply.pipeline import render_to_folder
from wildix_ast.asterisk.sorcery import CACHES, cache_entries
from wildix_ast.conf import sections
from wildix_ast.errors import ApplyError
from wildix_ast.model.settings_file import load_site
from wildix_ast.model.site import Site
from wildix_ast.model.system import Node, Realtime, RealtimeEngine, RealtimeMode
from wildix_ast.services.expiry.follower import Follower, FollowState, Reader
from wildix_ast.store import open_store
from wildix_ast.store.expiry_log import Entry
from wildix_ast.store.vault import MemoryVault

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site.yaml"
TWO = [Node(name="a", address=IPv4Address("10.0.0.1")),
       Node(name="b", address=IPv4Address("10.0.0.2"))]


def with_nodes(site: Site, nodes: list[Node]) -> Site:
    realtime = Realtime(mode=RealtimeMode.REALTIME, engine=RealtimeEngine.POSTGRESQL,
                        nodes=nodes)
    return site.model_copy(update={"system": site.system.model_copy(
        update={"realtime": realtime})})


def test_nodes_need_postgresql_and_distinct_names() -> None:
    with pytest.raises(ValidationError, match="engine: postgresql"):
        Realtime(mode=RealtimeMode.REALTIME, nodes=TWO)
    with pytest.raises(ValidationError, match="named twice"):
        Realtime(mode=RealtimeMode.REALTIME, engine=RealtimeEngine.POSTGRESQL,
                 nodes=[TWO[0], TWO[0].model_copy(update={"ami_port": 5039})])
    with pytest.raises(ValidationError, match="one AMI address"):
        Realtime(mode=RealtimeMode.REALTIME, engine=RealtimeEngine.POSTGRESQL,
                 nodes=[TWO[0], TWO[0].model_copy(update={"name": "c"})])


def test_the_store_keeps_the_nodes(tmp_path: Path) -> None:
    site = with_nodes(load_site(EXAMPLE), TWO)
    with open_store(str(tmp_path / "store.sqlite3")) as store:
        store.import_site(site)
        assert store.export_site().system.realtime.nodes == TWO


def test_no_ami_account_for_the_nodes_and_one_console_group(
        tmp_path: Path) -> None:
    """The nodes' AMI account is gone (its class `system` read every file through
    GetConfig): manager.conf holds the same two accounts with or without nodes. The
    console's socket goes to one group (0660) whose members the role chooses (the
    follower with nodes, Mail2Fax's dialer), never to the asterisk group (the collector
    and the fax service are in it)."""
    site, vault = load_site(EXAMPLE), MemoryVault()
    rendered = {}
    for label, nodes in (("one", []), ("two", TWO)):
        files = {p.name: p.read_text()
                 for p in render_to_folder(with_nodes(site, nodes), vault, tmp_path / label)}
        rendered[label] = files
        accounts = [s.name for s in sections(files["manager.conf"]) if s.name != "general"]
        assert len(accounts) == 2 and not any("nodes" in a for a in accounts), accounts
    for label in ("one", "two"):  # one console group, its members chosen by the role
        files_section = next(s for s in sections(rendered[label]["asterisk.conf"])
                             if s.name == "files")
        assert files_section.get("astctlpermissions") == "0660"
        assert files_section.get("astctlgroup") == "wildix-ast-console"
    # the rows file says whether its rows are logged for the other nodes: every write of
    # them (apply, undo, discard, recovery) reads it from the file it writes
    for label, logged in (("one", None), ("two", "yes")):
        database = next(s for s in sections(rendered[label]["wildix-realtime.conf"])
                        if s.name == "database")
        assert database.get("expiry_log") == logged


def test_an_object_name_that_could_break_the_console_command_is_refused() -> None:
    assert cache_entries(["ps_auths/101-auth", "voicemail/101@default"]) == [
        ("wildix-auths", "101-auth")]
    for key in ("101\r\nmodule unload res_pjsip.so", "101 ; core stop now", "a b", ""):
        with pytest.raises(ApplyError, match="refusing"):
            cache_entries([f"ps_auths/{key}"])


class FakeLog:
    """The two queries the follower sends (`store.expiry_log.bounds`, `after`), answered
    from a list: the real PostgreSQL path runs in tests/live/test_realtime_nodes_live.py."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.answer: object = None

    def execute(self, query: str, args: tuple[object, ...] = ()) -> None:
        ids = [e.id for e in self.entries]
        if "min(id)" in query:
            self.answer = (min(ids, default=None), max(ids, default=None))
        else:
            last, limit = args
            self.answer = [(e.id, e.cache, e.key) for e in self.entries
                           if e.id > int(str(last))][:int(str(limit))]

    def fetchone(self) -> object:
        return self.answer

    def fetchall(self) -> object:
        return self.answer


def follower(tmp_path: Path, commands: list[str]) -> Follower:
    def console(command: str, _timeout: float) -> str:
        commands.append(command)
        return ""

    return Follower("b", Reader("127.0.0.1", 5432, "db", "u", "p"), console,
                    FollowState(tmp_path / "b.json", "b"))


def test_the_follower_refuses_a_log_key_that_could_break_the_console_command(
        tmp_path: Path) -> None:
    """A log row is data from the network: a key with a line break or a space never
    reaches the console; its cache is emptied whole instead (the change is still taken),
    an unknown cache is skipped; the good entries around it are expired one by one."""
    commands: list[str] = []
    follow = follower(tmp_path, commands)
    follow.state.save(0)
    log = FakeLog([Entry(1, "wildix-auths", "101-auth"),
                   Entry(2, "wildix-auths", "102-auth\nmodule unload res_pjsip.so"),
                   Entry(3, "wildix-aors", "103 core stop now"),
                   Entry(4, "no-such-cache; core stop now", "104"),
                   Entry(5, "wildix-endpoints", "105")])
    done = follow.catch_up(log)
    assert commands == ["sorcery memory cache expire wildix-auths 101-auth",
                        "sorcery memory cache expire wildix-auths",
                        "sorcery memory cache expire wildix-aors",
                        "sorcery memory cache expire wildix-endpoints 105"]
    assert (done.expired, done.refused, done.last_id, done.whole) == (2, 3, 5, None)
    assert json.loads((tmp_path / "b.json").read_text()) == {"node": "b", "last_id": 5}


def test_the_follower_empties_its_caches_when_it_cannot_account_for_a_change(
        tmp_path: Path) -> None:
    """First start (no state), a log pruned past the last id done, or a log that ends
    before it (a new database): the three caches whole, then the log from its end."""
    whole = sorted(f"sorcery memory cache expire {c}" for c in CACHES)
    log = FakeLog([Entry(7, "wildix-auths", "101-auth"), Entry(8, "wildix-aors", "101")])
    for saved, expected in ((None, "first start"), (5, "pruned"), (20, "new database")):
        commands: list[str] = []
        follow = follower(tmp_path, commands)
        follow.state.path.unlink(missing_ok=True)
        if saved is not None:
            follow.state.save(saved)
        done = follow.catch_up(log)
        assert done.whole is not None and expected in done.whole
        assert commands == whole and done.last_id == 8
    # caught up at 6 (7 is next): entries one by one, no whole expiry; again: nothing
    commands = []
    follow = follower(tmp_path, commands)
    follow.state.save(6)
    assert follow.catch_up(log).expired == 2 and len(commands) == 2
    assert follow.catch_up(log).expired == 0 and len(commands) == 2


def test_a_console_that_does_not_answer_keeps_the_entries(tmp_path: Path) -> None:
    """Asterisk frozen or down: the entry that failed and those after it stay to do."""
    from wildix_ast.errors import WildixError

    calls: list[str] = []

    def console(command: str, _timeout: float) -> str:
        calls.append(command)
        if len(calls) == 2:
            raise WildixError("did not answer")
        return ""

    follow = Follower("b", Reader("h", 1, "d", "u", "p"), console,
                      FollowState(tmp_path / "b.json", "b"))
    follow.state.save(0)
    log = FakeLog([Entry(1, "wildix-auths", "1-auth"), Entry(2, "wildix-auths", "2-auth"),
                   Entry(3, "wildix-auths", "3-auth")])
    with pytest.raises(WildixError):
        follow.catch_up(log)
    assert follow.state.last() == 1
    done = follow.catch_up(log)
    assert done.expired == 2 and calls[-2:] == [
        "sorcery memory cache expire wildix-auths 2-auth",
        "sorcery memory cache expire wildix-auths 3-auth"]


def test_the_follower_reads_asterisks_own_account(tmp_path: Path) -> None:
    conf = tmp_path / "res_pgsql.conf"
    conf.write_text("[general]\ndbhost = 10.0.0.10\ndbport = 5433\ndbname = asterisk\n"
                    "dbuser = asterisk\ndbpass = s3cret\n")
    reader = Reader.from_res_pgsql(conf)
    assert (reader.host, reader.port, reader.database, reader.username) == (
        "10.0.0.10", 5433, "asterisk", "asterisk")
    conf.write_text("[general]\ndbhost = x\n")
    from wildix_ast.errors import SettingsError

    with pytest.raises(SettingsError, match="no dbname, dbuser, dbpass"):
        Reader.from_res_pgsql(conf)


def test_only_the_realtime_call_path_asks_for_the_contacts(tmp_path: Path) -> None:
    """Realtime endpoints stay `Unavailable` in res_pjsip beside a reachable contact: the
    realtime dialplan also asks PJSIP_DIAL_CONTACTS before sending a call to the
    unavailable path; the file mode's dialplan is unchanged."""
    site, vault = load_site(EXAMPLE), MemoryVault()
    realtime = site.model_copy(update={"system": site.system.model_copy(update={
        "realtime": Realtime(mode=RealtimeMode.REALTIME)})})
    for given, expected in ((site, False), (realtime, True)):
        folder = tmp_path / str(expected)
        files = render_to_folder(given, vault, folder)
        text = next(p for p in files if p.name == "extensions.conf").read_text()
        call_user = text[text.index("[wildix-call-user]"):]
        call_user = call_user[:call_user.index("\n[", 1)]
        assert ("PJSIP_DIAL_CONTACTS(${ARG1})" in call_user) is expected
        assert call_user.count('"${DEVICE_STATE(PJSIP/${ARG1})}" = "UNAVAILABLE"') == 2


def test_each_node_gets_a_trunk_to_the_others_authenticated_both_ways(tmp_path: Path) -> None:
    """Node a (the node whose ports the site has) gets one endpoint for node b: inbound
    digest as node-b, outbound digest as node-a, both on the pair's vault secret; only b's
    address permitted; its dialplan tries node-b when no local phone rings. A site whose
    ports match no node (or several) gets no trunk."""
    site, vault = load_site(EXAMPLE), MemoryVault()
    sip, ami = site.system.sip_rtp.sip_port, site.system.manager.port
    nodes = [Node(name="a", address=IPv4Address("10.0.0.1"), ami_port=ami, sip_port=sip),
             Node(name="b", address=IPv4Address("10.0.0.2"), ami_port=ami + 1,
                  sip_port=sip + 1)]
    files = {p.name: p.read_text() for p in
             render_to_folder(with_nodes(site, nodes), vault, tmp_path / "a")}
    by_name = {(s.name, s.get("type")): s for s in sections(files["pjsip.conf"])}
    endpoint = by_name[("node-b", "endpoint")]
    assert endpoint.get("auth") == "node-b-in" and endpoint.get("outbound_auth") == "node-b-out"
    assert endpoint.get("identify_by") == "username" and endpoint.get("from_user") == "node-a"
    assert endpoint.get("deny") == "0.0.0.0/0.0.0.0"
    assert endpoint.get("permit") == "10.0.0.2/255.255.255.255"
    assert by_name[("node-b", "aor")].get("contact") == f"sip:10.0.0.2:{sip + 1}"
    inbound, outbound = by_name[("node-b-in", "auth")], by_name[("node-b-out", "auth")]
    assert inbound.get("username") == "node-b" and outbound.get("username") == "node-a"
    secret = vault.get_secret("manager:node-pair-a-b")
    assert secret and inbound.get("password") == outbound.get("password") == secret
    assert ("node-a", "endpoint") not in by_name
    dialplan = files["extensions.conf"]
    assert "Dial(PJSIP/${ARG1}@node-b,${RING_TIMEOUT})" in dialplan
    assert "[wildix-from-nodes]" in dialplan

    elsewhere = [n.model_copy(update={"sip_port": n.sip_port + 10}) for n in nodes]
    files = {p.name: p.read_text() for p in
             render_to_folder(with_nodes(site, elsewhere), vault, tmp_path / "none")}
    assert "node-b" not in files["pjsip.conf"]
    assert "wildix-from-nodes" not in files["extensions.conf"]
