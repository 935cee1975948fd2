"""Migration 0009 on stores made by main 5a38bd70 (tests/unit/data/main_store/: the example
site and a richer one that sets every optional setting of the sections main kept as JSON
documents; make_fixtures.py there says how they were made): after the migration the store
exports what main exported and renders what today's code renders from the settings file main
imported, with the secrets main generated."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from support.store_contract import (
    MAIN_SITES,
    MAIN_STORES,
    check_migrated_main_store,
    check_schema,
)

from wildix_ast.store import database, lookups, open_store
from wildix_ast.store.schema import SCHEMA_HEAD


def _main_store(name: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{name}.sqlite3"
    shutil.copy(MAIN_STORES / f"{name}.sqlite3", path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchone() == ("0008",)
        assert raw.execute("SELECT count(*) FROM documents").fetchone() == (10,)
    return path


@pytest.mark.parametrize("name", MAIN_SITES)
def test_a_store_of_main_migrates_and_exports_and_renders_the_same(name: str,
                                                                    tmp_path: Path) -> None:
    path = _main_store(name, tmp_path)
    with open_store(str(path)) as store:
        check_migrated_main_store(name, store, tmp_path / "out")
    check_schema(f"sqlite:///{path}")
    with sqlite3.connect(path) as raw:
        tables = {n for (n,) in raw.execute("SELECT name FROM sqlite_master")}
        assert "documents" not in tables
        assert raw.execute("SELECT version_num FROM alembic_version").fetchone() \
            == (SCHEMA_HEAD,)


def test_the_downgrade_makes_the_documents_again(tmp_path: Path) -> None:
    """0009 down to 0008 and up again: the same site (the documents made from the rows
    hold everything the rows did)."""
    from alembic import command

    path = _main_store("rich", tmp_path)
    with open_store(str(path)) as store:
        site = store.export_site()
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as connection:
            command.downgrade(database._alembic_config(connection), "0008")
        with sqlite3.connect(path) as raw:
            assert raw.execute("SELECT count(*) FROM documents").fetchone() == (10,)
    finally:
        engine.dispose()
    with open_store(str(path)) as store:
        assert store.export_site() == site


def test_lookups_read_the_migrated_rows(tmp_path: Path) -> None:
    path = _main_store("rich", tmp_path)
    with open_store(str(path)) as store:
        site = store.export_site()
        access = store.access
        for trunk in site.trunks:
            assert lookups.trunk_by_name(access, trunk.name) == trunk
        for group in site.call_groups:
            assert lookups.call_group_by_name(access, group.name) == group
        for ivr in site.ivrs:
            assert lookups.ivr_by_name(access, ivr.name) == ivr
        for frame in site.time_frames:
            assert lookups.time_frame_by_name(access, frame.name) == frame
        for sound in site.sounds:
            assert lookups.sound_by_name(access, sound.name) == sound
        for trunk_group in site.trunk_groups:
            assert lookups.trunk_group_by_name(access, trunk_group.name) == trunk_group
        for procedure in site.dialplan.procedures:
            assert lookups.procedure_by_name(access, procedure.name) == procedure
        assert lookups.trunk_by_name(access, "nope") is None
        assert lookups.procedures_with_number(access, "+33140000000") == ["main"]
        assert lookups.procedures_with_number(access, "+33140000299") == []  # a pattern's
        assert lookups.call_groups_of(access, "100") == ["standard"]
        assert lookups.call_groups_of(access, "101") == ["direction", "standard", "support",
                                                        "ventes"]
        reception = store.procedure_of("100")
        assert reception is not None and reception.numbers[0].number == "8"
        direction = store.group_of("101")
        assert direction is not None and [str(c) for c in direction.allow] == ["international"]


def test_every_child_table_follows_a_changed_site(tmp_path: Path) -> None:
    """Moves, removals and changes inside list items (a call group's members, a rule's days,
    an IVR's options, a procedure's numbers, a group's call classes, a trunk's codecs) are
    written and read back, and undone by importing the first site again."""
    from wildix_ast.model.site import Site

    path = _main_store("rich", tmp_path)
    with open_store(str(path)) as store:
        site = store.export_site()
        data = site.model_dump(mode="json", exclude_defaults=True)
        data["call_groups"][0]["members"].reverse()
        data["time_frames"][0]["weekly"][0]["days"] = ["sat"]
        data["time_frames"][0]["holidays"].pop()
        data["ivrs"][0]["options"].pop(0)
        data["ivrs"][0].pop("on_timeout")
        data["dialplan"]["procedures"][1]["numbers"].reverse()
        data["dialplan"]["general"]["short_numbers"] = []
        data["dialplan"]["general"]["classes"].pop()
        data["groups"][1]["allow"] = []
        data["trunks"][0]["codecs"] = ["g722", "alaw"]
        data["sounds"][0]["files"].pop("en")
        changed = Site.model_validate(data)
        before = store.revision()
        assert store.import_site(changed).revision == before + 1
        assert store.export_site() == changed
        assert store.export_site().dialplan.general.short_numbers == []  # not None
        store.import_site(site)
        assert store.export_site() == site
