"""wildix-fastagi.conf: the FastAGI key, read by the dialplan (`FILE()`) on each request to
sign it; no Asterisk module reads this file.

Why a file and not a dialplan global: every AMI account with `reporting` may `Getvar` a
global, and the AGI application's data (what `Newexten` events and `CoreShowChannels`
show) is substituted: a key placed there would be read by anyone holding an AMI secret.
`FILE()` is refused to AMI callers (Asterisk's `live_dangerously = no`), and the request
carries only `SHA1(key|uniqueid|route|args|key)`, which is worth nothing for another request.
"""

from __future__ import annotations

import hashlib
import hmac

from wildix_ast.asterisk.base import HEADER, ConfigFile, Reload, RenderInput, View, static_modules

KEY_FILE = "wildix-fastagi.conf"
"""This file; the dialplan global `variables.AGI_KEY_FILE` holds its path."""
KEY_LENGTH = 48
#: where the key starts in KEY_FILE (bytes): after the header and `[fastagi]`, `key=`
KEY_OFFSET = len(f"{HEADER}\n[fastagi]\nkey=".encode())


def agi_key(given: RenderInput) -> str:
    """The FastAGI key (the vault's; without one, a bare render_site, derived from the
    manager secret without revealing it): 48 hex digits."""
    if given.fastagi_key:
        return given.fastagi_key
    return hmac.new(given.manager_secret.encode(), b"fastagi-key",
                    hashlib.sha256).hexdigest()[:KEY_LENGTH]


def _view(given: RenderInput) -> View:
    return {"fastagi_key": agi_key(given)}


def _secret(section: str, key: str, op: str, value: str) -> tuple[str, str] | None:
    return (value, "") if key == "key" else None


FILE = ConfigFile(
    name=KEY_FILE,
    # read on every request: nothing to reload; the dialplan's reload is harmless
    applied_by=Reload("pbx_config.so", "dialplan reload", order=90),
    view=_view,
    secret=_secret,
    modules=static_modules("func_env.so", "func_sha1.so"),
)
