#!/usr/bin/python
# SPDX-License-Identifier: GPL-2.0-or-later
"""Ansible module: validate a wildix-ast settings file on the target, apply it to Asterisk,
and only then put it in place. Runs the `wildix-ast` command with `--json` and reports its
outcome as Ansible expects: `changed` as wildix-ast says, the plan under `--diff`, nothing
written under `--check`, and wildix-ast's own message when it fails."""

from __future__ import annotations

DOCUMENTATION = r"""
module: wildix_ast_apply
short_description: Apply a wildix-ast site to the Asterisk of this host
description:
  - Writes the settings text to a temporary file next to I(dest), runs C(wildix-ast validate
    --json) on it, then C(wildix-ast apply --json) (with C(--dry-run) in check mode).
  - Returns C(fastagi) (C(host), C(port)): where the site's dialplan asks the FastAGI
    service, so the service's unit listens exactly there; C(mail2fax_profiles), how
    many Mail2Fax profiles the site has (its poller and dialer units run only when one does);
    and C(provisioning) (C(enabled), C(address), C(port), C(https)): whether the site runs
    the provisioning server.
  - I(dest) is replaced only once the apply succeeded, so it always holds the settings the
    running Asterisk configuration came from. When validation or the apply fails, wildix-ast
    has kept (or restored) the previous configuration; the module fails with its message.
options:
  content: {description: The settings file (YAML text)., type: str, required: true}
  source: {description: Where the settings came from (named in messages)., type: str}
  dest: {description: Where the settings file is kept on the host., type: path,
         required: true}
  executable: {description: The wildix-ast command., type: path, required: true}
  etc: {description: Asterisk's configuration folder., type: path, default: /etc/asterisk}
  db: {description: The store (a SQLite path or a database URL)., type: str, required: true}
  templates: {description: A folder of template overrides., type: path}
  offline: {description: Write without contacting Asterisk (first install, or Asterisk
            stopped); the caller restarts Asterisk., type: bool, default: false}
  restart: {description: Allow wildix-ast to restart Asterisk when a change needs it., type: bool,
            default: false}
  lock_timeout: {description: Seconds to wait for another apply on this host., type: float,
                 default: 120}
"""

import json
import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule

SECRET_LINE = re.compile(r"^(\s*[-\w]*(?:password|secret)[-\w]*\s*:\s*).+$",
                         re.IGNORECASE | re.MULTILINE)


def mask(text):
    """The settings text with password and secret values hidden (for the diff)."""
    return SECRET_LINE.sub(r"\g<1>********", text)


def run_json(module, argv, shown_path, source):
    """Run wildix-ast with --json: (exit code, parsed object). The temporary file's name is
    replaced by the source's in every message, so errors point at the file a person edits."""
    rc, stdout, stderr = module.run_command(argv, environ_update={"NO_COLOR": "1"})
    try:
        data = json.loads(stdout)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        module.fail_json(msg="wildix-ast printed no JSON result (exit %d): %s"
                         % (rc, (stderr or stdout).strip()[-2000:]), rc=rc, cmd=argv)
    def named(text):
        # full path first, then the bare file name that problem locations use
        text = text.replace(shown_path, source)
        return text.replace(os.path.basename(shown_path), os.path.basename(source))

    return rc, json.loads(named(json.dumps(data))), named(stderr)


def describe_failure(data, rc, stderr):
    error = data.get("error") or {}
    message = error.get("message") or stderr.strip() or "failed (exit %d)" % rc
    problems = error.get("problems") or data.get("problems") or []
    lines = ["%s: %s" % (p.get("location"), p.get("message")) if p.get("location")
             else str(p.get("message")) for p in problems]
    return message + ("".join("\n  " + line for line in lines)), problems


def main():
    module = AnsibleModule(
        argument_spec=dict(
            content=dict(type="str", required=True),
            source=dict(type="str"),
            dest=dict(type="path", required=True),
            executable=dict(type="path", required=True),
            etc=dict(type="path", default="/etc/asterisk"),
            db=dict(type="str", required=True, no_log=False),
            templates=dict(type="path"),
            offline=dict(type="bool", default=False),
            restart=dict(type="bool", default=False),
            lock_timeout=dict(type="float", default=120.0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    # wildix-ast creates its SQLite store (generated secrets) with the caller's umask;
    # whatever it creates for us is owner-only. The files it writes into Asterisk's folder
    # get their own explicit mode (0640, group asterisk).
    os.umask(0o077)
    dest = p["dest"]
    source = p["source"] or dest
    content = p["content"]
    try:
        with open(dest, encoding="utf-8") as handle:
            previous = handle.read()
    except FileNotFoundError:
        previous = None
    settings_changed = previous != content

    folder = os.path.dirname(dest)
    if not os.path.isdir(folder):
        module.fail_json(msg="the folder of %s does not exist" % dest)
    fd, candidate = tempfile.mkstemp(dir=folder, prefix=".%s." % os.path.basename(dest),
                                     suffix=".candidate")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)  # mkstemp made it 0600: it may hold passwords

        rc, data, stderr = run_json(module, [p["executable"], "validate", candidate, "--json"],
                                    candidate, source)
        if rc != 0 or not data.get("ok"):
            message, problems = describe_failure(data, rc, stderr)
            module.fail_json(msg="wildix-ast: %s (%s not applied; the host keeps its previous "
                             "configuration)" % (message, source), rc=rc, problems=problems)
        # where the site's dialplan asks the FastAGI service: the role's unit listens there
        fastagi = data.get("fastagi")
        # the role runs Mail2Fax's poller and dialer only for a site with a profile
        mail2fax_profiles = data.get("mail2fax_profiles", 0)
        # whether the site runs the provisioning server (address set), its address and port
        provisioning = data.get("provisioning")

        argv = [p["executable"], "apply", candidate, "--etc", p["etc"], "--db", p["db"],
                "--json", "--lock-timeout", str(p["lock_timeout"])]
        if p["templates"]:
            argv += ["--templates", p["templates"]]
        if module.check_mode:
            argv.append("--dry-run")
        elif p["offline"]:
            argv.append("--offline")
        if p["restart"]:
            argv.append("--restart")
        rc, data, stderr = run_json(module, argv, candidate, source)
        diff = [{"before_header": dest, "after_header": source,
                 "before": mask(previous or ""), "after": mask(content)}]
        if data.get("diff"):
            diff.append({"prepared": data["diff"]})
        result = {key: data.get(key) for key in (
            "files", "reloads", "restart_needed", "verified", "generation", "target")}
        result["offline"] = bool(p["offline"]) and not module.check_mode
        result["fastagi"] = fastagi
        result["mail2fax_profiles"] = mail2fax_profiles
        result["provisioning"] = provisioning
        if rc != 0 or not data.get("ok"):
            message, problems = describe_failure(data, rc, stderr)
            module.fail_json(msg="wildix-ast apply: %s (the host keeps its previous "
                             "configuration)" % message, rc=rc, problems=problems, diff=diff,
                             **result)

        changed = bool(data.get("changed")) or settings_changed
        if not module.check_mode and settings_changed:
            os.chmod(candidate, 0o600)
            os.replace(candidate, dest)  # the settings the running configuration came from
        module.exit_json(changed=changed, settings_changed=settings_changed,
                         config_changed=bool(data.get("changed")), diff=diff, **result)
    finally:
        if os.path.exists(candidate):
            os.unlink(candidate)


if __name__ == "__main__":
    main()
