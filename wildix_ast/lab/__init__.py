"""The lab: live Asterisk 22 instances in a cached Debian sid root filesystem.

Layer 8: the lab Asterisk (`instance`, `rootfs`, `ports`), the loopback port allocator
(`allocator`), SIPp phones (`sipp`) and the WMS test call in the lab (`testcall`); imports
every layer below it, never the CLI.
"""
