"""Test support that ships with the package because the product's own code calls it or a
verb drives it: `crash_points` (named points where a test kills an apply or an import;
inert unless $WILDIX_AST_CRASH_AT names one) and `deploy_host` (a booted Debian host in
systemd-nspawn for the Ansible role's tests, `python -m wildix_ast.testing.deploy_host`).

`crash_points` sits in the bottom layer (apply and the store call it); `deploy_host` sits
with the CLI at the top."""
