"""wildix-fastagi.conf: the FastAGI key, read by the dialplan (`FILE()`) on each request to
sign it; no Asterisk module reads this file.

Why a file and not a dialplan global: every AMI account with `reporting` may `Getvar` a
global, and the AGI application's data (what `Newexten` events and `CoreShowChannels`
show) is substituted: a key placed there would be read by anyone holding an AMI secret.
`FILE()` is refused to AMI callers (Asterisk's `live_dangerously = no`), and the request
carries only `SHA1(key|uniqueid|route|args|key)`, which is worth nothing for another request.
"""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Reload, RenderInput, View, static_modules
from wildix_ast.asterisk.service_contexts import KEY_FILE, agi_key


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
