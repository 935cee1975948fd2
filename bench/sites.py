"""Synthetic sites of any size, for benchmarks and load tests.

Written and read with libyaml's C dumper and loader (`DUMPER`, `LOADER`): PyYAML's
pure-Python dumper took 69 s for 100,000 users on this machine, the C one a few seconds."""

from __future__ import annotations

import yaml

#: libyaml's C classes (PyYAML built with libyaml; the pure-Python ones otherwise)
DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# The argon2id hash of "Web#0000000xY": what an export carries and an import keeps as it is.
# Plain WEB passwords would cost one argon2id hash (about 40 ms) per user on every import.
WEB_PASSWORD_HASH = ("$argon2id$v=19$m=19456,t=2,p=1$ffd/QtrdveeVQ8aiOgj7Pg$"
                     "9FwbaFDbO17RQjwXu9lWj6Km9j6teG17aDPJjI2qAFM")


def web_password_text(i: int) -> str:
    """User `i`'s WEB password as a person writes it (policy-compliant)."""
    return f"Web#{i:07d}xY"


def site_yaml(users: int, *, with_passwords: bool = True, web_texts: bool = False,
              first_extension: int = 100000, realtime: str | None = None) -> str:
    """A valid settings file with `users` users spread over a few groups and types.
    `web_texts`: WEB passwords as texts (`web_password_text`) rather than one hash.
    `first_extension`: from 100000, a site of more than 16,000 users meets the French
    numbering plan's 116xxx and 118xxx; 200000 leaves room for 100,000.
    `realtime`: `system.realtime.mode` (`file` or `realtime`), unset when None.
    The users come last: a user's entry dumped as a one-item list (`user_yaml`) and
    appended to the text is one more user."""
    groups = ["default", "sales", "support", "management"]
    rows = []
    for i in range(users):
        extension = str(first_extension + i)
        row: dict[str, object] = {
            "name": f"User {i} Dupont-Martin",
            "extension": extension,
            "email": f"user{i}@example.com",
            "login": f"user{i}",
            "office_did": f"+3314{i:08d}",
            "mobile": f"+3366{i:08d}",
            "group": groups[i % len(groups)],
            "department": f"Department {i % 37}",
            "type": "admin" if i % 500 == 0 else "user",
        }
        if with_passwords:
            # Fixed, policy-compliant secrets keep the benchmark from measuring the generator.
            row["sip_password"] = f"Sip#{i:07d}xY"
            row["web_password"] = web_password_text(i) if web_texts else WEB_PASSWORD_HASH
        rows.append(row)
    system: dict[str, object] = {"pbx_name": "bench", "language_region": {
        "language": "fr", "tone_zone": "fr", "country_code": "33",
        "timezone": "Europe/Paris"}}
    if realtime is not None:
        system["realtime"] = {"mode": realtime}
    site = {"system": system, "groups": [{"name": g} for g in groups], "users": rows}
    return yaml.dump(site, Dumper=DUMPER, sort_keys=False, width=200)


def user_yaml(user: dict[str, object]) -> str:
    """One user's entry, to append to `site_yaml`'s text (its users come last)."""
    return yaml.dump([user], Dumper=DUMPER, sort_keys=False, width=200)
