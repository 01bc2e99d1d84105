"""perfdhcp (Kea's load generator) as a relay: 1,000 distinct clients, no drops."""

from __future__ import annotations

from .conftest import Node, perfdhcp_stats, require


def test_perfdhcp_thousand_clients_no_drops(lab):
    require("perfdhcp")
    node = Node(
        lab,
        bindings=[],
        pools=[{"subnet": "10.250.0.0/16", "start": "10.250.0.10", "end": "10.250.15.250"}],
    )
    perf = node.add_vm("perf", "0a:58:0a:fa:00:01", port="tapperf")
    # perfdhcp -l acts as a relay: giaddr is this address, replies come back to port 67.
    lab.ip(perf, "addr", "add", "10.250.0.1/16", "dev", "eth0")
    node.start()
    out = lab.exec(
        perf, "perfdhcp", "-4", "-l", "eth0", "-r", "200", "-R", "1000", "-n", "1000",
        "-p", "30", "-W", "2000000", check=False, timeout=60,
    )  # fmt: skip
    stats = perfdhcp_stats(out)
    assert stats["DISCOVER-OFFER"] == {"sent packets": 1000, "received packets": 1000,
                                       "drops": 0}, out  # fmt: skip
    assert stats["REQUEST-ACK"] == {"sent packets": 1000, "received packets": 1000,
                                    "drops": 0}, out  # fmt: skip
    assert "non unique addresses: 0" in out
    # Every allocation was committed to the store, in far fewer transactions than leases.
    assert node.metric("lmdp_leases_committed_total") >= 1000
    assert node.metric("lmdp_bindings", kind="pool") == 1000
