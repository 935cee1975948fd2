"""Two Asterisk nodes on one PostgreSQL store (issue 22, docs/scaling.md): both lab
instances read the same realtime tables; one apply writes a change once and expires it on
both nodes (the other one through its AMI with the nodes' account); a node that does not
answer is reported, its expiries kept pending and sent by `wildix-ast realtime expire`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from support.live_site import EXAMPLE, example_site
from support.pg_server import PostgresServer, postgres_server  # noqa: F401
from support.sip_ua import Agent
from test_realtime_postgres_live import on_postgres

from wildix_ast.apply import pipeline
from wildix_ast.apply.nodes import PENDING_FILE
from wildix_ast.apply.pipeline import site_sounds
from wildix_ast.lab.instance import Lab
from wildix_ast.lab.rootfs import ensure_rootfs
from wildix_ast.model.site import Site
from wildix_ast.model.system import Node
from wildix_ast.store import Store, open_store
from wildix_ast.store.vault import with_secrets

pytestmark = pytest.mark.lab


@dataclass
class TwoNodes:
    a: Lab
    b: Lab
    store: Store
    site: Site
    work: Path


def with_nodes(site: Site, labs: dict[str, Lab]) -> Site:
    realtime = site.system.realtime.model_copy(update={"nodes": [
        Node(name=name, address=IPv4Address("127.0.0.1"), ami_port=lab.ports.ami,
             sip_port=lab.ports.sip) for name, lab in labs.items()]})
    return site.model_copy(update={"system": site.system.model_copy(
        update={"realtime": realtime})})


def with_password(site: Site, extension: str, password: str) -> Site:
    return site.model_copy(update={"users": [
        u.model_copy(update={"sip_password": password}) if u.extension == extension else u
        for u in site.users]})


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory,
          postgres_server: PostgresServer) -> Iterator[TwoNodes]:  # noqa: F811
    ensure_rootfs()
    work = tmp_path_factory.mktemp("nodes")
    url = postgres_server.create_database()
    labs = {name: Lab(f"node{name}", work / "lab") for name in ("a", "b")}
    site = with_nodes(on_postgres(example_site(), postgres_server.port,
                                  url.rsplit("/", 1)[1]), labs)
    store = open_store(str(work / "store.sqlite3"))
    store.import_site(site, sounds=site_sounds(site, EXAMPLE, store))
    pipeline.setup_realtime_database(store, url)
    for lab in labs.values():
        pipeline.install_stored_site(store, lab.target())
    started: list[Lab] = []
    try:
        for lab in labs.values():
            lab.start()
            started.append(lab)
        yield TwoNodes(labs["a"], labs["b"], store, site, work)
    finally:
        for lab in started:
            lab.stop()
        store.close()


def registers(lab: Lab, extension: str, password: str) -> int | None:
    agent = Agent(extension, password, lab.ports.sip, timeout=5.0)
    try:
        return agent.register(expires=60).status
    finally:
        agent.close()


def password_now(nodes: TwoNodes, extension: str) -> str:
    site = with_secrets(nodes.store.export_site(), nodes.store)
    user = next(u for u in site.users if u.extension == extension)
    assert user.sip_password is not None
    return user.sip_password


def test_one_apply_changes_both_nodes_within_a_second(nodes: TwoNodes) -> None:
    old = password_now(nodes, "101")
    for lab in (nodes.a, nodes.b):  # both nodes hold 101's auth in their caches now
        assert registers(lab, "101", old) == 200
    new = "Two-Nodes-Pass-2026!x"
    outcome = pipeline.apply_site(with_password(nodes.site, "101", new), nodes.store,
                                  nodes.a.target())
    applied = time.monotonic()
    report = outcome.report
    assert report is not None and report.reloads == []
    assert report.rows_changed == ["ps_auths/101-auth"]
    assert report.nodes is not None
    assert report.nodes.expired == {"b": ["wildix-auths/101-auth"]}
    assert report.nodes.missed == {}
    # the other node takes the new password at once, and refuses the old one
    assert registers(nodes.b, "101", new) == 200
    in_effect = time.monotonic() - applied
    assert registers(nodes.b, "101", old) in (401, 403)
    assert registers(nodes.a, "101", new) == 200
    assert registers(nodes.a, "101", old) in (401, 403)
    assert in_effect < 1.0, in_effect
    assert not (nodes.a.etc_dir / ".wildix-ast" / PENDING_FILE).exists()
    print(f"node b registered with the new password {in_effect * 1000:.0f} ms after "
          f"the apply on node a returned (apply: {report.total_seconds:.2f} s)")


def cli(nodes: TwoNodes, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200",
           "WILDIX_AST_DB": str(nodes.work / "store.sqlite3"),
           "WILDIX_AST_LAB_STATE": str(nodes.work / "lab")}
    return subprocess.run([sys.executable, "-m", "wildix_ast", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def test_a_node_that_does_not_answer_is_caught_up_later(nodes: TwoNodes) -> None:
    """Node b frozen (SIGSTOP: its AMI accepts no login): the apply on node a succeeds,
    reports b as missed and keeps b's expiries pending; b, thawed, still has the old
    password cached (what the pending list is for); `realtime expire` sends them, then b
    takes the new password and the pending list is gone."""
    old = password_now(nodes, "102")
    assert registers(nodes.b, "102", old) == 200  # cached on b
    new = "Frozen-Node-Pass-2026!x"
    pid = nodes.b.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        outcome = pipeline.apply_site(with_password(nodes.store.export_site(), "102", new),
                                      nodes.store, nodes.a.target())
    finally:
        os.kill(pid, signal.SIGCONT)
    report = outcome.report
    assert report is not None and report.verified
    assert report.nodes is not None and set(report.nodes.missed) == {"b"}
    pending = nodes.a.etc_dir / ".wildix-ast" / PENDING_FILE
    assert json.loads(pending.read_text()) == {"b": ["wildix-auths/102-auth"]}
    assert registers(nodes.a, "102", new) == 200
    time.sleep(0.5)  # b comes back from SIGCONT
    assert registers(nodes.b, "102", old) == 200  # b's cache was not told

    caught = cli(nodes, "realtime", "expire", "--lab", "nodea", "--json")
    assert caught.returncode == 0, caught.stdout + caught.stderr
    assert json.loads(caught.stdout)["expired"] == {"b": ["wildix-auths/102-auth"]}
    assert not pending.exists()
    assert registers(nodes.b, "102", new) == 200
    assert registers(nodes.b, "102", old) in (401, 403)
    again = cli(nodes, "realtime", "expire", "--lab", "nodea")
    assert again.returncode == 0 and "nothing pending" in again.stdout


def test_a_call_crosses_from_node_a_to_node_b(nodes: TwoNodes) -> None:
    """150's phone registered on node b only (never on a); 101 calls 150 through node a:
    a has no contact for 150, dials it over the trunk to b (digest both ways on the pair's
    secret), b rings its phone with 101's caller ID (P-Asserted-Identity trusted from the
    node only), the call connects."""
    import threading
    from typing import Any

    from support.sip_ua import sdp

    callee = Agent("150", password_now(nodes, "150"), nodes.b.ports.sip, timeout=5.0)
    try:
        # CI (loaded, after the test that froze node b) once saw b refuse this first
        # REGISTER (401); not reproduced alone: retried for up to 10 s, the tries printed
        import time

        deadline, tries = time.monotonic() + 10, 1
        while callee.register(expires=120).status != 200:
            assert time.monotonic() < deadline, f"150 refused by node b {tries} times"
            tries += 1
            time.sleep(0.5)
        print(f"150 registered on node b after {tries} REGISTER(s)")
        answered: dict[str, Any] = {}

        def answer() -> None:
            answered["invite"] = callee.answer_call(sdp(41000, {0: "PCMU/8000"}), 20)

        thread = threading.Thread(target=answer)
        thread.start()
        from wildix_ast.lab.sipp import SippDriver

        call = SippDriver(nodes.a.ports.sip, work_dir=nodes.work / "sipp").call(
            "101", password_now(nodes, "101"), "150", hold_seconds=2)
        thread.join()
        assert answered["invite"] is not None
        assert "<sip:101@" in (answered["invite"].header("P-Asserted-Identity") or "")
        assert call.connected, call.run.describe()
        callee.register(expires=0)
    finally:
        callee.close()


def test_a_third_party_is_refused_by_the_inter_node_endpoint(nodes: TwoNodes) -> None:
    """Someone on the network claiming to be node a (From node-a) without the pair's
    secret: challenged, then refused; never rung through."""
    from support.sip_ua import sdp

    stranger = Agent("node-a", "not-the-pair-secret-2026!", nodes.b.ports.sip, timeout=5.0)
    try:
        response, _ = stranger.call("102", sdp(42000, {0: "PCMU/8000"}))
        assert response.status in (401, 403), response.first
    finally:
        stranger.close()
