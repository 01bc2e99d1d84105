"""Metrics: names and labels as exported, own registry, interface label sets forgotten."""

from __future__ import annotations

import prometheus_client
from prometheus_client.parser import text_string_to_metric_families

from dataplane.metrics import CONTENT_TYPE, Metrics


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_all_metric_names_present():
    text = Metrics().render().decode()
    for name in (
        "lmdp_frames_received_total",
        "lmdp_replies_sent_total",
        "lmdp_drops_total",
        "lmdp_internal_errors_total",
        "lmdp_interfaces_attached",
        "lmdp_bindings",
        "lmdp_store_commits_total",
        "lmdp_store_commit_seconds",
        "lmdp_store_errors_total",
        "lmdp_leases_committed_total",
    ):
        assert f"# TYPE {name} " in text, name


def test_frame_counters():
    m = Metrics()
    for _ in range(3):
        m.received("tap0", "dhcpv4", "DHCPDISCOVER")
    m.received("tap1", "arp", "arp_request")
    m.sent("tap0", "DHCPOFFER")
    m.sent("tap0", "DHCPOFFER")
    m.dropped("tap1", "not_proxied")
    s = samples(m)
    key = (("interface", "tap0"), ("protocol", "dhcpv4"), ("type", "DHCPDISCOVER"))
    assert s[("lmdp_frames_received_total", key)] == 3
    key = (("interface", "tap1"), ("protocol", "arp"), ("type", "arp_request"))
    assert s[("lmdp_frames_received_total", key)] == 1
    key = (("interface", "tap0"), ("type", "DHCPOFFER"))
    assert s[("lmdp_replies_sent_total", key)] == 2
    key = (("interface", "tap1"), ("reason", "not_proxied"))
    assert s[("lmdp_drops_total", key)] == 1


def test_forget_interface():
    m = Metrics()
    m.received("tap0", "arp", "arp_request")
    m.sent("tap0", "arp_reply")
    m.dropped("tap0", "truncated")
    m.received("tap1", "arp", "arp_request")
    m.forget_interface("tap0")
    text = m.render().decode()
    assert 'interface="tap0"' not in text
    assert 'interface="tap1"' in text
    m.received("tap0", "arp", "arp_request")  # re-attached: counts from zero again
    key = (("interface", "tap0"), ("protocol", "arp"), ("type", "arp_request"))
    assert samples(m)[("lmdp_frames_received_total", key)] == 1


def test_other_metrics():
    m = Metrics()
    m.internal_error()
    m.set_interfaces_attached(4)
    counts = [2, 5]
    m.count_bindings_with(lambda: tuple(counts))
    m.store_committed(0.003, leases=7)
    m.store_committed(0.2, leases=1)
    m.store_error()
    s = samples(m)
    assert s[("lmdp_internal_errors_total", ())] == 1
    assert s[("lmdp_interfaces_attached", ())] == 4
    assert s[("lmdp_bindings", (("kind", "static"),))] == 2
    assert s[("lmdp_bindings", (("kind", "pool"),))] == 5
    counts[1] = 6  # read at each scrape, not when set
    assert samples(m)[("lmdp_bindings", (("kind", "pool"),))] == 6
    assert s[("lmdp_store_commits_total", ())] == 2
    assert s[("lmdp_leases_committed_total", ())] == 8
    assert s[("lmdp_store_errors_total", ())] == 1
    assert s[("lmdp_store_commit_seconds_count", ())] == 2
    assert s[("lmdp_store_commit_seconds_bucket", (("le", "0.005"),))] == 1


def test_prometheus_objects_usable_directly():
    # The engine may also use the prometheus_client objects as attributes.
    m = Metrics()
    m.bindings.labels(kind="pool").set(3)
    m.store_commit_seconds.observe(0.01)
    s = samples(m)
    assert s[("lmdp_bindings", (("kind", "pool"),))] == 3
    assert s[("lmdp_store_commit_seconds_count", ())] == 1


def test_own_registry_per_instance():
    a, b = Metrics(), Metrics()  # would raise "Duplicated timeseries" on a shared registry
    a.received("tap0", "arp", "arp_request")
    assert b"tap0" not in b.render()
    assert b"lmdp_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)


def test_content_type():
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_the_labs_metric_reader_sums_what_metrics_renders():
    from dataplane.lab import metric_sum

    m = Metrics()
    m.dropped("tap0", "truncated")
    m.dropped("tap1", "truncated")
    m.dropped("tap1", "bad_ethertype")
    m.count_bindings_with(lambda: (2, 7))
    text = m.render().decode()
    assert metric_sum(text, "lmdp_drops_total") == 3
    assert metric_sum(text, "lmdp_drops_total", interface="tap1") == 2
    assert metric_sum(text, "lmdp_drops_total", interface="tap1", reason="truncated") == 1
    assert metric_sum(text, "lmdp_bindings", kind="pool") == 7
    assert metric_sum(text, "lmdp_no_such_metric") == 0
