"""Password policy of the WMS guide: at least 8 characters with an upper-case letter,
a lower-case letter, a digit and a special character; known default passwords refused."""

from __future__ import annotations

import re
import secrets
import string

MIN_LENGTH = 8
GENERATED_LENGTH = 20
# Only characters that need no quoting in any Asterisk configuration file nor in a SIP URI
# parameter, so a generated secret can never change the meaning of a generated line.
SPECIALS = "!#%+-.:=?@_~*^/"
FORBIDDEN = set(';"\\,[]{}$`\'<>|&()')
# Variants of a factory default ("Wildix123!") are as guessable as the default itself.
_DEFAULT_WORDS = ("wildix", "admin", "password", "passw0rd", "asterisk", "changeme")
_KNOWN_WEAK = {
    "wildix", "admin", "password", "passw0rd", "root", "asterisk", "secret", "changeme",
    "123456", "12345678", "123456789", "qwerty", "azerty", "letmein", "welcome", "default",
}


_SPECIAL = re.compile(r"[^\w\s]|_")
_FORBIDDEN = re.compile("[" + re.escape("".join(sorted(FORBIDDEN))) + r"\s]")


# A password that surely complies, in one regex pass (a 10,000-user file checks 20,000 of
# them on every validate, render and apply): long enough, an upper-case letter, a lower-case
# one, a digit, a special character, nothing forbidden, no default word. Anything else takes
# the detailed checks below, which decide.
_SURELY_FINE = re.compile(
    "(?=[^A-Z]*[A-Z])(?=[^a-z]*[a-z])(?=[^0-9]*[0-9])(?=.*[" + re.escape(SPECIALS) + "])"
    "(?!.*(?i:" + "|".join(_DEFAULT_WORDS) + "))"
    "[A-Za-z0-9" + re.escape(SPECIALS) + f"]{{{MIN_LENGTH},}}")


def password_problems(password: str) -> list[str]:
    """Why `password` breaks the policy; empty when it complies."""
    if _SURELY_FINE.fullmatch(password):
        return []
    return _detailed_problems(password)


def _detailed_problems(password: str) -> list[str]:
    problems: list[str] = []
    lowered = password.lower()
    if lowered in _KNOWN_WEAK or any(word in lowered for word in _DEFAULT_WORDS):
        problems.append("is a known default or weak password")
    if len(password) < MIN_LENGTH:
        problems.append(f"must be at least {MIN_LENGTH} characters long")
    if lowered == password:
        problems.append("needs an upper-case letter")
    if password.upper() == password:
        problems.append("needs a lower-case letter")
    if not any(c.isdigit() for c in password):
        problems.append("needs a digit")
    if not _SPECIAL.search(_FORBIDDEN.sub("", password)):
        problems.append(f"needs a special character (one of {SPECIALS})")
    if _FORBIDDEN.search(password) or not password.isprintable():
        bad = sorted({c for c in password
                      if c in FORBIDDEN or not c.isprintable() or c.isspace()})
        problems.append(f"must not contain {' '.join(repr(c) for c in bad)}")
    return problems


def generate_password(length: int = GENERATED_LENGTH) -> str:
    """A random password that satisfies the policy, from the OS's cryptographic source."""
    if length < MIN_LENGTH:
        raise ValueError(f"length must be at least {MIN_LENGTH}")
    alphabet = string.ascii_letters + string.digits + SPECIALS
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(length))
        if not password_problems(candidate):
            return candidate


# --- WEB passwords at rest -------------------------------------------------------------------
# Nothing needs a WEB password back, so the store keeps only an argon2id hash of it. The cost
# is OWASP's recommended minimum for argon2id (19 MiB, 2 passes, 1 lane): about 40 ms here.
HASH_MEMORY_KIB = 19 * 1024
HASH_TIME_COST = 2
_HASH = re.compile(r"\$argon2id\$v=19\$m=[0-9]{1,8},t=[0-9]{1,4},p=[0-9]{1,3}"
                   r"\$[A-Za-z0-9+/]{11,64}\$[A-Za-z0-9+/]{16,128}")


def is_password_hash(value: str) -> bool:
    """Whether `value` is an argon2id hash (what the store and an export hold), not a
    password."""
    return _HASH.fullmatch(value) is not None


def hash_password(password: str) -> str:
    """A salted argon2id hash of `password`."""
    from argon2 import PasswordHasher  # argon2 loads only when a password is hashed

    return PasswordHasher(time_cost=HASH_TIME_COST, memory_cost=HASH_MEMORY_KIB,
                          parallelism=1).hash(password)


def password_matches(hashed: str, password: str) -> bool:
    """Whether `password` is the one `hashed` was made from."""
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return PasswordHasher().verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False
