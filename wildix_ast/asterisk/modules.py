"""modules.conf: `autoload = no` and the explicit list of modules, gathered from what every
generated file declares it needs (`ConfigFile.modules`) plus the core every instance needs."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, RenderInput, Restart, View

# Media, timing, file formats for prompts and voicemail (wav49|wav), and services every
# instance offers whatever the site: AGI (the FastAGI service) and `channel originate`.
_CORE = (
    "res_timing_timerfd.so",
    "bridge_simple.so", "bridge_native_rtp.so", "bridge_holding.so", "bridge_softmix.so",
    "codec_ulaw.so", "codec_alaw.so", "codec_a_mu.so", "codec_gsm.so", "codec_resample.so",
    "format_wav.so", "format_wav_gsm.so", "format_gsm.so", "format_pcm.so", "format_sln.so",
    "res_agi.so", "res_speech.so",
    "res_clioriginate.so",
)

# Modules Asterisk's core would otherwise load behind our back, or that are never wanted.
NOLOAD = (
    # unknown SIP endpoints must be rejected, never matched to an anonymous endpoint
    "res_pjsip_endpoint_identifier_anonymous.so",
)


def _view(given: RenderInput) -> View:
    from wildix_ast.asterisk import registry  # the registry imports this module

    wanted = set(_CORE)
    for config_file in registry():
        if config_file.wanted(given.site):
                wanted.update(config_file.modules(given.site))
    return {"modules": sorted(wanted), "noload_modules": list(NOLOAD)}


FILE = ConfigFile(
    name="modules.conf",
    applied_by=Restart("modules.conf decides which modules load at startup"),
    view=_view,
)
