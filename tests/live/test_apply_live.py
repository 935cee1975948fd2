"""`apply` on a live Asterisk 22: changes land and are verified, failures roll back, and calls
keep flowing through reloads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.live_site import LiveSite, example_site, live_site
from support.sound_fixtures import tone

from wildix_ast.apply import pipeline
from wildix_ast.apply.pipeline import compile_site
from wildix_ast.errors import ApplyError
from wildix_ast.model.site import Site
from wildix_ast.model.users import User
from wildix_ast.sounds.audio import convert
from wildix_ast.sounds.install import files_to_install, plan_sound_files

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def site_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    with live_site(tmp_path_factory.mktemp("apply"), "apply") as live:
        yield live


@pytest.fixture
def lab(site_lab: LiveSite) -> Iterator[LiveSite]:
    yield site_lab
    assert site_lab.wait_no_channels() == 0


def with_users(site: Site, *extensions: str) -> Site:
    extra = [User(name=f"Temp {ext}", extension=ext) for ext in extensions]
    return site.model_copy(update={"users": [*site.users, *extra]})


def apply_site(live: LiveSite, site: Site, templates: Path | None = None) -> Any:
    outcome = pipeline.apply_site(site, live.store, live.target, templates=templates)
    live.compiled = compile_site(site, live.store, live.target, templates)
    return outcome.report


def endpoints(live: LiveSite) -> set[str]:
    async def ask() -> set[str]:
        async with live.console() as ami:
            return await ami.endpoints()

    return asyncio.run(ask())


def test_new_user_is_live_after_apply(lab: LiveSite) -> None:
    report = apply_site(lab, with_users(example_site(), "103"))
    assert "pjsip.conf" in report.files_written
    assert "103" in endpoints(lab)
    driver = lab.sipp()
    with driver.phone("103", lab.password("103")) as phone:
        call = driver.call("101", lab.password("101"), "103", hold_seconds=1)
        answered = phone.uas.wait(timeout=15)
    assert call.success, call.run.describe()
    assert answered.answered == 1
    apply_site(lab, example_site())
    assert "103" not in endpoints(lab)


def refused_templates(folder: Path) -> Path:
    """An engineer's override that Asterisk refuses: an invalid value on every endpoint."""
    builtin = Path(__file__).resolve().parents[2] / "templates" / "asterisk"
    override = folder / "templates"
    override.mkdir()
    text = (builtin / "pjsip.conf.j2").read_text().replace(
        "direct_media = no", "direct_media = no\ndtmf_mode = carrier-pigeon")
    assert "carrier-pigeon" in text
    (override / "pjsip.conf.j2").write_text(text)
    return override


def test_rejected_configuration_is_rolled_back(lab: LiveSite, tmp_path: Path) -> None:
    override = refused_templates(tmp_path)
    before = {p.name: p.read_bytes() for p in lab.lab.etc_dir.iterdir() if p.is_file()}
    with pytest.raises(ApplyError, match="restored"):
        apply_site(lab, with_users(example_site(), "104"), templates=override)
    after = {p.name: p.read_bytes() for p in lab.lab.etc_dir.iterdir() if p.is_file()}
    assert after == before
    found = endpoints(lab)
    assert "104" not in found and {"101", "102"} <= found


def test_calls_survive_five_applies(lab: LiveSite) -> None:
    """Calls 101 → 102 keep connecting while five applies reload PJSIP and the dialplan."""
    driver = lab.sipp()
    calls = 24
    result: dict[str, Any] = {}
    with driver.phone("102", lab.password("102"), calls=calls, timeout=180) as phone:
        def load() -> None:
            result["load"] = driver.call_load("101", lab.password("101"), "102", calls=calls,
                                              rate=2, limit=4, hold_seconds=1.5)

        thread = threading.Thread(target=load)
        thread.start()
        reports = []
        for i in range(5):
            extra = [str(110 + j) for j in range(i + 1)]
            reports.append(apply_site(lab, with_users(example_site(), *extra)))
        thread.join(timeout=240)
        answered = phone.uas.wait(timeout=30)
    loaded = result["load"]
    assert answered.answered == calls and answered.byes == calls  # 102 took them, not voicemail
    assert all("pjsip.conf" in r.files_written for r in reports)
    assert loaded.failed == 0 and loaded.successful == calls, loaded.run.describe()
    assert loaded.connected == calls
    apply_site(lab, example_site())


def test_rejected_configuration_puts_the_sound_files_back(lab: LiveSite,
                                                          tmp_path: Path) -> None:
    """An apply that changes a sound and that Asterisk refuses: the previous sound bytes are
    back with the previous files, and the store keeps the previous audio."""
    data = lab.lab.data_dir
    site = lab.store.export_site()
    stored = dict(lab.store.stored_sounds())
    ferme = data / "sounds/fr/wildix-ast/ferme.wav"
    old = ferme.read_bytes()
    other = convert(tone(tmp_path / "other.wav", 0.5, 900).read_bytes(), ".wav", "test")
    with pytest.raises(ApplyError, match="sound files"):
        pipeline.apply_site(with_users(example_site(), "105"), lab.store, lab.target,
                            templates=refused_templates(tmp_path),
                            sounds={**stored, ("ferme", "fr"): other})
    assert ferme.read_bytes() == old != other.wav
    assert lab.store.stored_sounds() == stored
    wanted = files_to_install(site.sounds, site.system.language_region.language, stored)
    assert plan_sound_files(data, wanted) == ()
