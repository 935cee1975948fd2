"""The live PBX through AMI (`wildix-ast runtime ...`): a supervised AMI connection
(`supervisor`, reconnecting after an Asterisk restart or hang), the PBX state it sees
(`state`), WMS "Debug" per-call event logs (`call_log`), WMS "SIP bloqués" security-event
counting and bans (`security`, pure policy), tied together by `service`.

Layer 7 (see `services`).
"""
