"""The long-running services: FastAGI for call-time decisions (`agi`), the AMI service
for live state, per-call logs and SIP bans (`ami`), and their systemd notifications
(`sdnotify`).

Layer 7: imports the model, the store, call-time decisions and Asterisk names; never the
lab or the CLI (a service runs on a host with no lab)."""
