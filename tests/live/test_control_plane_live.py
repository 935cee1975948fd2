"""Issue 17, parts 1 and 2, against the session's live lab (the example site applied by the
project's own pipeline): what a stolen AMI secret can do with every account manager.conf
holds, and what a local process speaking FastAGI without the key can do."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from support.agi_fixtures import agi_service
from support.live_site import LiveSite

from wildix_ast.ami import AmiClient, AmiMessage
from wildix_ast.conf import sections
from wildix_ast.errors import SettingsError
from wildix_ast.model.preferences import Preferences
from wildix_ast.model.trunks import Trunk, TrunkAuth, with_provider_addresses
from wildix_ast.services.agi.probe import handshake

pytestmark = pytest.mark.lab


def accounts(live: LiveSite) -> dict[str, str]:
    """Every AMI account the applied manager.conf creates: name -> secret."""
    return {s.name: str(s.get("secret")) for s in sections(live.compiled.files["manager.conf"])
            if s.name != "general"}


def forbidden_actions(ami: AmiClient, trunk: str) -> dict[str, Awaitable[AmiMessage | str]]:
    """What no account the project creates may do: read or change a file, reload, load a
    module, run a CLI command, originate (a program, a trunk), write AstDB."""
    return {
        "Command pjsip show auth": ami.command("pjsip show auth 101-auth"),
        "Command channel originate AGI": ami.command(
            "channel originate Local/s@default application AGI /bin/id"),
        "GetConfig": ami.action("GetConfig", Filename="pjsip.conf"),
        "GetConfigJSON": ami.action("GetConfigJSON", Filename="pjsip.conf"),
        "UpdateConfig": ami.action("UpdateConfig", SrcFilename="pjsip.conf",
                                   DstFilename="pjsip.conf", Reload="yes",
                                   **{"Action-000000": "Delete",
                                      "Cat-000000": "101"}),
        "Reload": ami.action("Reload", Module="res_pjsip.so"),
        "ModuleLoad": ami.action("ModuleLoad", Module="app_system.so",
                                 LoadType="load"),
        "Originate System": ami.action("Originate", Channel="Local/*43@default",
                                       Application="System", Data="id"),
        "Originate AGI": ami.action("Originate", Channel="Local/*43@default",
                                    Application="AGI", Data="/bin/id"),
        "Originate trunk": ami.action("Originate",
                                      Channel=f"PJSIP/0899123456@{trunk}",
                                      Application="Wait", Data="1"),
        "DBPut": ami.action("DBPut", Family="wildix-test-call", Key="0", Val="x"),
    }


def test_no_account_the_project_creates_reads_a_secret_or_runs_a_program(
        clean_live: LiveSite) -> None:
    live = clean_live
    created = accounts(live)
    assert len(created) == 2, created  # wildix-ast's own and the AMI service's
    password = live.password("101")
    trunk = next(s.name for s in sections(live.compiled.files["pjsip.conf"])
                 if s.name.startswith("trunk-") and s.get("type") == "endpoint")
    before = live.lab.cli("core show channels count")

    async def attempt(ami: AmiClient, what: Awaitable[AmiMessage | str]) -> str:
        try:
            return f"ACCEPTED: {await what}"
        except Exception as e:  # AmiError: the refusal, its message kept
            return f"refused: {e}"

    async def go(user: str, secret: str) -> dict[str, str]:
        async with AmiClient("127.0.0.1", live.compiled.ami_port, user, secret,
                             timeout=3) as ami:
            tries = forbidden_actions(ami, trunk)
            return {name: await attempt(ami, what) for name, what in tries.items()}

    found: dict[str, dict[str, str]] = {}
    for user, secret in created.items():
        found[user] = asyncio.run(go(user, secret))
    print("\n".join(f"{u} {a}: {r[:90]}" for u, rs in found.items() for a, r in rs.items()))
    for user, results in found.items():
        assert not any(password in r for r in results.values()), user
        accepted = {a: r for a, r in results.items() if r.startswith("ACCEPTED")}
        assert accepted == {}, (user, accepted)
    time.sleep(0.5)
    assert live.lab.cli("core show channels count") == before


def test_test_call_goes_through_the_callers_class_checks(clean_live: LiveSite) -> None:
    """`test-call` originates through the console into the guarded context: a premium
    number is refused to a default-group user (cause 21) as from their phone; the echo
    test is answered (the test can fail)."""
    live = clean_live

    def test_call(*args: str) -> tuple[int, dict[str, object]]:
        done = subprocess.run(
            [sys.executable, "-m", "wildix_ast", "test-call", "--json", "--lab",
             live.lab.name, "--hold", "1", *args], capture_output=True, text=True,
            timeout=90, check=False,
            env={**os.environ, "WILDIX_AST_DB": str(live.work / "store.sqlite3"),
                 "WILDIX_AST_LAB_STATE": str(live.lab.dir.parent)})
        assert done.stdout, done.stderr
        return done.returncode, json.loads(done.stdout)

    code, result = test_call("0899123456", "--from", "101")
    assert code == 1 and result["result"] == "failed" and result["cause"] == 21, result
    code, result = test_call("--echo", "--from", "101")
    assert code == 0 and result["result"] == "answered", result
    assert live.lab.cli("database show wildix-test-call").strip().endswith("0 results found.")


def feature_code(route: str, service: str, option: str) -> bytes:
    return handshake(route, ["101", service, option], headers={
        "agi_channel": "PJSIP/101-00000099", "agi_extension": "63"})


def speak(port: int, data: bytes) -> bytes:
    """One FastAGI session from a plain socket: the handshake, then `200 result=1` to every
    command the server sends, until it closes."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as peer:
        peer.sendall(data)
        while chunk := peer.recv(4096):
            received += chunk
            peer.sendall(b"200 result=1\n" * chunk.count(b"\n"))
    return received


def test_fastagi_without_the_key_changes_nothing_and_is_logged(
        clean_live: LiveSite, tmp_path: Path) -> None:
    live = clean_live
    log = tmp_path / "agi.log"
    abroad = "*2*00441234567890"
    args = ("101", "forward_all", abroad)
    with agi_service("--db", str(live.work / "store.sqlite3"), log=log) as service:
        try:
            # the reviewer's request as it was sent before (no signature); a made-up one;
            # a signature the dialplan made for another request (as AMI events show it),
            # replayed with the attacker's arguments
            seen = service.route("feature-code", "101", "forward_all", "*2*102")
            for route in ("feature-code", "0" * 40 + "/feature-code", seen):
                answer = speak(service.port, feature_code(route, *args[1:]))
                assert b"SET VARIABLE" not in answer and b"MSet" not in answer, answer
            kept = live.store.preferences_of("101")
            assert kept is None or kept.internal.forward_always is None, kept
            deadline = time.monotonic() + 5
            while log.read_text().count("security event: FastAGI request refused") < 3:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            assert service.key not in log.read_text()
            # the same request signed as the dialplan signs it is taken: the test can fail
            answer = speak(service.port, feature_code(service.route("feature-code", *args),
                                                      *args[1:]))
            assert b"WILDIX_AGI_STATUS" in answer, answer
            changed = live.store.preferences_of("101")
            assert changed is not None and changed.internal.forward_always == "00441234567890"
        finally:
            live.store.change_preferences("101", lambda _: Preferences())


def test_no_ami_account_reads_the_fastagi_key(clean_live: LiveSite) -> None:
    """The dialplan reads the key from a file (FILE() is refused to AMI callers); the
    globals and the AGI's data carry no key."""
    live = clean_live
    key = next(line.removeprefix("key=") for line in
               live.compiled.files["wildix-fastagi.conf"].splitlines()
               if line.startswith("key="))
    key_file = next(line.split("=", 1)[1] for line in
                    live.compiled.files["extensions.conf"].splitlines()
                    if line.startswith("WILDIX_AGI_KEY="))
    assert key not in live.compiled.files["extensions.conf"]

    async def go(user: str, secret: str) -> list[str]:
        async with AmiClient("127.0.0.1", live.compiled.ami_port, user, secret,
                             timeout=3) as ami:
            return [str(await ami.action("Getvar", Variable=v, check=False)) for v in (
                "WILDIX_AGI", "WILDIX_AGI_KEY", f"FILE({key_file})",
                f"FILE({key_file},14,48)", f"SHELL(cat {key_file})")]

    for user, secret in accounts(live).items():
        replies = asyncio.run(go(user, secret))
        assert not any(key in r for r in replies), (user, replies)
        assert "agi://" in replies[0], replies  # the test reads globals


def test_validate_refuses_a_fastagi_service_off_this_host(tmp_path: Path) -> None:
    site = Path("examples/site.yaml").read_text(encoding="utf-8").replace(
        "system:\n", "system:\n  fastagi: {host: 192.0.2.10, port: 4573}\n", 1)
    (tmp_path / "site.yaml").write_text(site, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "wildix_ast", "validate",
                           str(tmp_path / "site.yaml")], capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, "NO_COLOR": "1",
                                                        "COLUMNS": "200"})
    assert done.returncode == 2, done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert "system.fastagi.host" in said and "not a loopback address" in said, said
    assert "Traceback" not in said


def test_registration_trunk_addresses_are_resolved_at_apply_or_located() -> None:
    trunk = Trunk(name="op", auth=TrunkAuth.REGISTRATION, host="localhost",
                  username="acme", secret="Give-n-42")
    (resolved,) = with_provider_addresses([trunk])
    assert resolved.identify_addresses == ["127.0.0.1"]  # the system resolver (/etc/hosts)
    given = trunk.model_copy(update={"addresses": [IPv4Address("192.0.2.7")]})
    assert with_provider_addresses([given])[0].identify_addresses == ["192.0.2.7"]
    unknown = trunk.model_copy(update={"host": "no-such-host.invalid"})
    with pytest.raises(SettingsError) as refused:
        with_provider_addresses([trunk, unknown])
    assert [p.location for p in refused.value.problems] == ["trunks[1].host"]
    assert "give trunks[1].addresses" in str(refused.value.problems[0])
