"""The AMI service's own account on the example site's rendered manager.conf, against a real
Asterisk 22: it can do what the service needs (events, device states, channels)
and nothing that reads configuration or secrets (Command, GetConfig, config-file functions),
and the service runs on it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from support.live_site import LiveSite

from wildix_ast.ami import AmiClient
from wildix_ast.asterisk.manager import runtime_account
from wildix_ast.errors import AmiError
from wildix_ast.services.ami.account import site_runtime
from wildix_ast.services.ami.service import MonitorService, ServiceConfig
from wildix_ast.services.ami.supervisor import AmiSettings
from wildix_ast.store.vault import manager_secret

pytestmark = pytest.mark.lab


def runtime_client(live: LiveSite) -> AmiClient:
    user = runtime_account(live.compiled.site.system.manager.username)
    return AmiClient("127.0.0.1", live.compiled.ami_port, user,
                     manager_secret(live.store, user), timeout=3, events=True)


def test_the_runtime_account_has_only_what_the_service_needs(clean_live: LiveSite) -> None:
    sip_password = clean_live.password("101")

    async def go() -> None:
        async with runtime_client(clean_live) as ami:
            await ami.ping()
            assert await ami.action_list("CoreShowChannels", "CoreShowChannelsComplete") == []
            devices = await ami.action_list("DeviceStateList", "DeviceStateListComplete")
            assert any(d.get("Device") == "PJSIP/101" for d in devices)
            for refused in (ami.command("core show version"),
                            ami.command("pjsip show auth 101"),
                            ami.action("GetConfig", Filename="pjsip.conf"),
                            ami.action("GetConfigJSON", Filename="manager.conf"),
                            ami.action("UpdateConfig", SrcFilename="pjsip.conf",
                                       DstFilename="x.conf"),
                            ami.action("Reload", Module="res_pjsip.so"),
                            ami.action("ModuleLoad", Module="app_system.so",
                                       LoadType="load"),
                            ami.action("Originate", Channel="Local/*43@users",
                                       Application="System", Data="id")):
                with pytest.raises(AmiError) as refusal:
                    await refused
                # "Permission denied"; Originate of System: "Originate Access Forbidden"
                assert "Permission denied" in refusal.value.message or \
                    "Forbidden" in refusal.value.message, refusal.value.message
            # Reading a file through a dialplan function (Getvar is in `reporting`): the
            # functions that read files are not loaded, or refused to AMI callers.
            for function in ("AST_CONFIG(pjsip.conf,101,password)", "FILE(/etc/passwd)",
                             "SHELL(cat /etc/passwd)"):
                reply = await ami.action("Getvar", Variable=function, check=False)
                assert sip_password not in str(reply) and "root:" not in str(reply), reply

    asyncio.run(go())


def test_the_service_runs_on_its_own_account(clean_live: LiveSite, tmp_path: Path) -> None:
    runtime = site_runtime(clean_live.compiled.site)
    settings = AmiSettings("127.0.0.1", clean_live.compiled.ami_port, runtime.ami_user,
                           manager_secret(clean_live.store, runtime.ami_user), timeout=2)

    async def go() -> None:
        service = MonitorService(ServiceConfig(settings, tmp_path, status_interval=0.2))
        task = asyncio.create_task(service.run())
        try:
            deadline = time.monotonic() + 10
            while not (service.supervisor.connected and service.state.devices):
                assert time.monotonic() < deadline, service.supervisor.last_error
                await asyncio.sleep(0.1)
            assert "PJSIP/101" in service.state.devices
        finally:
            service.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(task, 10)

    asyncio.run(go())
