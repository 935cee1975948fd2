"""Options of the testinfra suite that checks a host deployed with the wildix_ast role.

    pytest tests/infra --hosts=ssh://root@pbx1.example.net [--ssh-identity-file KEY]

(as root, or add testinfra's --sudo: the settings file and the store are root's only).

The suite reads what the host was deployed with (its settings file) from the host itself;
the SIP test call goes from this machine to the host's SIP address, so it must reach it."""

from __future__ import annotations

from typing import Any

import pytest
from deployed_host import Deployed

from wildix_ast.model.settings_file import parse_site


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wildix-ast deployed host")
    group.addoption("--pbx-settings", default="/etc/wildix-ast/site.yaml",
                    help="the settings file the role placed on the host")
    group.addoption("--pbx-home", default="/opt/wildix-ast",
                    help="wildix_ast_home: the virtual environment is its venv/")
    group.addoption("--pbx-db", default="/var/lib/wildix-ast/wildix-ast.sqlite3",
                    help="the store on the host")
    group.addoption("--pbx-sip-host", default=None,
                    help="where this machine reaches the host's SIP port (default: the "
                    "address testinfra connects to)")
    group.addoption("--pbx-local-ip", default="127.0.0.1",
                    help="this machine's address as the host sees it (SIPp's contact)")
    group.addoption("--pbx-mail-spool", default="/var/lib/wildix-ast/mail-spool",
                    help="where the FastAGI service queues missed-call mails "
                    "(wildix_ast_mail_spool)")
    group.addoption("--pbx-services",
                    default="wildix-ast-agi,wildix-ast-runtime,wildix-ast-mail,wildix-ast-cdr,"
                    "wildix-ast-fax",
                    help="comma-separated wildix-ast units that must be enabled and active "
                    "(wildix_ast_services)")


@pytest.fixture(scope="module")
def deployed(host: Any, request: pytest.FixtureRequest) -> Deployed:
    option = request.config.getoption
    path = option("--pbx-settings")
    text = host.file(path).content_string  # root's: connect as root, or pass --sudo
    sip_host = option("--pbx-sip-host") or getattr(host.backend, "hostname", "127.0.0.1")
    services = [s.strip() for s in option("--pbx-services").split(",") if s.strip()]
    return Deployed(site=parse_site(text, path), settings_path=path,
                    home=option("--pbx-home"), db=option("--pbx-db"), sip_host=sip_host,
                    local_ip=option("--pbx-local-ip"), services=services,
                    mail_spool=option("--pbx-mail-spool"))
