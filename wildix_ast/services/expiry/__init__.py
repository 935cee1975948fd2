"""The expiry follower of one Asterisk node (issue 22, docs/scaling.md): it expires, in its
own Asterisk's sorcery memory caches, the realtime objects an apply changed on any node."""
