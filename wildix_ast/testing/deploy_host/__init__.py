"""A booted Debian forky host (systemd in `systemd-nspawn`) that Ansible deploys to over SSH.

Test infrastructure for `ansible/` and `tests/infra/`, like `wildix_ast.lab` is for apply."""
