"""Errors a person can act on: each carries its problems with their locations and an exit code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the input, located like `users[3].extension`."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class WildixError(Exception):
    """Base of every error wildix-ast reports to a person instead of a traceback."""

    exit_code = 1

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []


class UnknownUserError(WildixError):
    """A command names an extension no user has."""

    exit_code = 1


class SettingsError(WildixError):
    """The settings file cannot be read or does not describe a valid site."""

    exit_code = 2


class StoreError(WildixError):
    """The store could not be opened, migrated or written."""

    exit_code = 3


class LabError(WildixError):
    """The lab Asterisk cannot be built, started or reached."""

    exit_code = 4


class AmiError(WildixError):
    """The Asterisk Manager Interface refused us or did not answer."""

    exit_code = 5


class ApplyError(WildixError):
    """A configuration could not be applied; the previous one was restored."""

    exit_code = 6


class RenderError(WildixError):
    """A template could not be rendered."""

    exit_code = 7


class TargetBusyError(WildixError):
    """Another wildix-ast process holds the target's lock (an apply or a rollback)."""

    exit_code = 8


class ServiceError(WildixError):
    """A runtime service (FastAGI, AMI monitor) cannot start or does not answer."""

    exit_code = 9


class DirectoryError(WildixError):
    """The company directory (LDAP / Active Directory) cannot be reached, refuses us, or
    gives entries that cannot become users; nothing was changed."""

    exit_code = 10


class MailError(WildixError):
    """The mail server cannot be reached (refused, unknown name, timed out) or broke off."""

    exit_code = 11


class MailTlsError(MailError):
    """TLS with the mail server failed (handshake, certificate, STARTTLS not offered)."""

    exit_code = 12


class MailAuthError(MailError):
    """The mail server refused the profile's user and password."""

    exit_code = 13


class MailRejectedError(MailError):
    """The mail server refused the message for good (a 5xx reply)."""

    exit_code = 14


class FaxError(WildixError):
    """A fax could not be queued or sent (the fax spool, Asterisk's console, a fax job)."""

    exit_code = 15


class ProvisioningError(WildixError):
    """The provisioning server cannot start as configured (no address, HTTPS without a
    certificate, a port it cannot bind)."""

    exit_code = 16
