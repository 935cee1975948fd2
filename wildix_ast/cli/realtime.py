"""`wildix-ast realtime setup`: realtime on PostgreSQL (issue 22), once per database, with
an admin connection that is not kept: the four tables and the nodes' expiry log, apply's
writer account (rows of those four tables and the log only; its connection kept in the
store's vault, never shown) and Asterisk's own account, allowed to read those four tables
and the log and nothing else. `wildix-ast realtime follow`: each node's expiry follower
(several nodes, docs/scaling.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wildix_ast.cli.console import emit_json, err, mode, out
from wildix_ast.cli.users import DbUrl, JsonOutput

app = typer.Typer(help="Realtime objects: users' SIP objects and mailboxes in database "
                       "tables (system.realtime; docs/realtime.md).", no_args_is_help=True)



@app.command("setup")
def setup(
    admin_url: Annotated[str, typer.Option(
        "--admin-url", envvar="WILDIX_AST_REALTIME_ADMIN_URL", show_envvar=True,
        help="postgresql://user:password@host:port/database: an account that may create "
             "roles and tables there; used once, not kept.",
        show_default=False)],
    db: DbUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Make the tables, Asterisk's read-only account and apply's writer account
    (PostgreSQL)."""
    from wildix_ast.apply.pipeline import setup_realtime_database
    from wildix_ast.store import open_store

    mode.json = as_json
    with open_store(db) as store:
        message = setup_realtime_database(store, admin_url)
    if as_json:
        emit_json({"ok": True, "message": message})
    else:
        out.print(message)


@app.command("follow")
def follow(
    node: Annotated[str, typer.Option(
        "--node", help="This node's name (system.realtime.nodes): names its state file "
        "and its messages.", show_default=False)],
    lab: Annotated[str | None, typer.Option(
        "--lab", help="Follow for the lab instance NAME (its console and configuration "
        "folder) instead of this host's Asterisk.", show_default=False)] = None,
    etc_dir: Annotated[Path, typer.Option(
        "--etc-dir", help="Asterisk's configuration folder on this host (its "
        "res_pgsql.conf gives the database account).")] = Path("/etc/asterisk"),
    state: Annotated[Path | None, typer.Option(
        "--state", help="The file keeping the last log entry done [default: "
        "/var/lib/wildix-ast-expiry/<node>.json; with --lab, in the lab's folder]",
        show_default=False)] = None,
    once: Annotated[bool, typer.Option(
        "--once", help="Catch up once and exit (no LISTEN).")] = False,
    as_json: JsonOutput = False,
) -> None:
    """Expire in this node's Asterisk what an apply on any node changed (the expiry log
    of several nodes on one PostgreSQL store, docs/scaling.md); runs until stopped, as the
    node's `wildix-ast-expiry` service."""
    import re
    import signal
    import threading

    from wildix_ast.asterisk_cli import Runner, host_runner
    from wildix_ast.errors import SettingsError
    from wildix_ast.lab.instance import running_lab
    from wildix_ast.services.expiry.follower import Follower, FollowState, Reader
    from wildix_ast.services.sdnotify import notify

    mode.json = as_json
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,39}", node):
        raise SettingsError(f"--node {node!r}: a node name (a letter, then letters, "
                            "digits, '_' or '-')")
    runner: Runner
    if lab:
        running = running_lab(lab)
        runner, etc = running.cli, running.etc_dir
        default_state = running.dir / f"expiry-{node}.json"
    else:
        runner, etc = host_runner(etc_dir / "asterisk.conf"), etc_dir
        default_state = Path("/var/lib/wildix-ast-expiry") / f"{node}.json"
    follower = Follower(node, Reader.from_res_pgsql(etc / "res_pgsql.conf"), runner,
                        FollowState(state or default_state, node),
                        say=lambda m: err.print(m, markup=False))
    if once:
        done = follower.once()
        if as_json:
            emit_json({"ok": True, "node": node, **done.to_json()})
        else:
            out.print(f"node {node}: {done.expired} expired, {done.refused} refused"
                      + (f", caches emptied ({done.whole})" if done.whole else "")
                      + f"; last entry {done.last_id}")
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _s, _f: stop.set())
    signal.signal(signal.SIGINT, lambda _s, _f: stop.set())
    follower.run(stop, ready=lambda: notify("READY=1"), alive=lambda: notify("WATCHDOG=1"))
