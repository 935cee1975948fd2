"""Several nodes on one PostgreSQL store (issue 22): the nodes in the settings and the
store, the nodes' AMI account, and what a node that does not answer leaves pending."""

from __future__ import annotations

import asyncio
import json
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from pydantic import ValidationError

from wildix_ast.apply.nodes import PENDING_FILE, NodeLink, Nodes, cache_entries
from wildix_ast.apply.pipeline import render_to_folder
from wildix_ast.conf import sections
from wildix_ast.errors import ApplyError
from wildix_ast.lab.allocator import free_port
from wildix_ast.model.settings_file import load_site
from wildix_ast.model.site import Site
from wildix_ast.model.system import Node, Realtime, RealtimeEngine, RealtimeMode
from wildix_ast.store import open_store
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


def test_the_nodes_account_is_rendered_only_with_nodes(tmp_path: Path) -> None:
    site, vault = load_site(EXAMPLE), MemoryVault()
    plain = render_to_folder(with_nodes(site, []), vault, tmp_path / "one")
    manager = next(p for p in plain if p.name == "manager.conf").read_text()
    assert "-nodes]" not in manager
    two = render_to_folder(with_nodes(site, TWO), vault, tmp_path / "two")
    manager = next(p for p in two if p.name == "manager.conf").read_text()
    account = next(s for s in sections(manager) if s.name.endswith("-nodes"))
    assert account.get("write") == "system" and account.get("read") == ""
    assert account.get("secret") == vault.get_secret(f"manager:{account.name}")


def test_an_object_name_that_could_inject_an_ami_field_is_refused() -> None:
    assert cache_entries(["ps_auths/101-auth", "voicemail/101@default"]) == [
        "wildix-auths/101-auth"]
    with pytest.raises(ApplyError, match="refusing"):
        cache_entries(["ps_auths/101\r\nAction: Originate"])


def test_a_node_that_does_not_answer_is_kept_pending(tmp_path: Path) -> None:
    """A closed port: the node is reported missed, its entries kept (and merged with the
    next apply's), never raised."""
    nodes = Nodes([NodeLink("b", "127.0.0.1", free_port())], "x-nodes", "secret", tmp_path)
    said: list[str] = []
    first = asyncio.run(nodes.expire(["ps_auths/101-auth"], lambda _s, m: said.append(m)))
    assert set(first.missed) == {"b"} and first.expired == {}
    assert any("NODE b NOT REACHED" in m for m in said)
    second = asyncio.run(nodes.expire(["ps_endpoints/102"], lambda _s, _m: None))
    assert set(second.missed) == {"b"}
    assert json.loads((tmp_path / PENDING_FILE).read_text()) == {
        "b": ["wildix-auths/101-auth", "wildix-endpoints/102"]}
    # a node no longer listed is dropped from the pending list
    gone = Nodes([], "x-nodes", "secret", tmp_path)
    asyncio.run(gone.expire([], lambda _s, _m: None))
    assert not (tmp_path / PENDING_FILE).exists()


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
