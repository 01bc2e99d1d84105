"""lmdp's protocol core: codecs and responders for DHCPv4, DHCPv6 and the ARP/NDP gateway
proxy.

This package does no I/O. Nothing here imports `socket`, `asyncio` or `time`, or configures
logging: responders take a received frame, the interface name and `now` as arguments and
return an `Outcome` (the frame to send, or the reason for dropping) for `dataplane/` to act
on. Malformed remote input is reported as a drop reason, never raised; any other exception
raised from here is a bug.
"""
