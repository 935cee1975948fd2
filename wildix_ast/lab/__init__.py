"""The lab: live Asterisk 22 instances in a cached Debian sid root filesystem."""
