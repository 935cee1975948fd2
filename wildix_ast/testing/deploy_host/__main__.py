"""`python -m wildix_ast.testing.deploy_host up|down|status|inventory [NAME]`: the booted forky host
by hand (the test suite uses `DeployHost` directly)."""

from __future__ import annotations

import json
import sys

from wildix_ast.cli.console import err, report_error
from wildix_ast.errors import WildixError
from wildix_ast.lab.rootfs import BuildStep
from wildix_ast.testing.deploy_host.host import DeployHost, HostInfo

USAGE = "usage: python -m wildix_ast.testing.deploy_host up|down|status|inventory [NAME]"


def inventory_line(info: HostInfo) -> str:
    """One Ansible inventory host line reaching `info` as root with its key."""
    return (f"{info.name} ansible_host=127.0.0.1 ansible_port={info.ssh_port} "
            f"ansible_user=root ansible_ssh_private_key_file={info.key} "
            "ansible_ssh_common_args='-o StrictHostKeyChecking=no "
            "-o UserKnownHostsFile=/dev/null'")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("up", "down", "status", "inventory") or len(argv) > 2:
        err.print(USAGE)
        return 64
    verb = argv[0]
    host = DeployHost(argv[1] if len(argv) > 1 else "default")
    try:
        if verb == "up":
            def say(step: BuildStep) -> None:
                if step.milestone:
                    err.print(str(step))

            info = host.up(say)
            print(json.dumps(info.to_json(), indent=2))
        elif verb == "down":
            print("stopped" if host.down() else "not running")
        else:
            running = host.info()
            if running is None:
                print("not running")
                return 1
            print(inventory_line(running) if verb == "inventory"
                  else json.dumps(running.to_json(), indent=2))
    except WildixError as error:
        report_error(error)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
