"""Synthetic sites of any size, for benchmarks and load tests."""

from __future__ import annotations

import yaml

# The argon2id hash of "Web#0000000xY": what an export carries and an import keeps as it is.
# Plain WEB passwords would cost one argon2id hash (about 40 ms) per user on every import.
WEB_PASSWORD_HASH = ("$argon2id$v=19$m=19456,t=2,p=1$ffd/QtrdveeVQ8aiOgj7Pg$"
                     "9FwbaFDbO17RQjwXu9lWj6Km9j6teG17aDPJjI2qAFM")


def web_password_text(i: int) -> str:
    """User `i`'s WEB password as a person writes it (policy-compliant)."""
    return f"Web#{i:07d}xY"


def site_yaml(users: int, *, with_passwords: bool = True, web_texts: bool = False,
              first_extension: int = 100000) -> str:
    """A valid settings file with `users` users spread over a few groups and types.
    `web_texts`: WEB passwords as texts (`web_password_text`) rather than one hash.
    `first_extension`: from 100000, a site of more than 16,000 users meets the French
    numbering plan's 116xxx and 118xxx; 200000 leaves room for 100,000."""
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
    site = {
        "system": {"pbx_name": "bench", "language_region": {
            "language": "fr", "tone_zone": "fr", "country_code": "33",
            "timezone": "Europe/Paris"}},
        "groups": [{"name": g} for g in groups],
        "users": rows,
    }
    return yaml.safe_dump(site, sort_keys=False, width=200)
