"""The command line's failure modes: one line, the right exit status, no traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from dataplane.lab import write_config

LMDP = [sys.executable, "-m", "dataplane.cli"]


def run(*args, ns: str | None = None, unprivileged: bool = False, timeout: float = 20):
    cmd = [*LMDP, *args]
    if unprivileged:
        # Without CAP_NET_RAW, as an unprivileged user would be (root keeps file access).
        cmd = ["setpriv", "--bounding-set=-net_raw,-net_admin", "--inh-caps=-all", *cmd]
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    "body, key",
    [
        ("gatway: {ipv4: 169.254.1.1}\n", "gatway"),
        ("bindings:\n  - {name: a, mac: '0a:58:0a:f4:02:1a', ipv4: 10.244.2.300/24}\n",
         "bindings[0].ipv4"),
        ("pools:\n  - {subnet: 10.1.0.0/24, start: 10.1.0.10, end: 10.1.0.200}\n"
         "  - {subnet: 10.1.0.0/25, start: 10.1.0.20, end: 10.1.0.30}\n", "pools"),
    ],
)  # fmt: skip
def test_bad_config_exits_2_with_one_line(tmp_path, body, key):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(textwrap.dedent(body))
    for args in (["check-config", str(cfg)], ["serve", "-c", str(cfg)]):
        p = run(*args)
        assert p.returncode == 2, p
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and key in lines[0], p.stderr
        assert "Traceback" not in p.stderr


def test_check_config_prints_effective_config(tmp_path):
    cfg = write_config(tmp_path / "ok.yaml")
    p = run("check-config", str(cfg))
    assert p.returncode == 0, p.stderr
    assert "lease_time: 3500" in p.stdout and "0a:58:a9:fe:01:01" in p.stdout


def test_not_root_is_one_line(tmp_path, lab):
    ns = lab.netns("cli")
    cfg = write_config(lab.workdir / "c.yaml")
    p = run("serve", "-c", str(cfg), ns=ns, unprivileged=True)
    assert p.returncode == 1, p
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "root" in lines[0], p.stderr


def test_no_such_interface_is_one_line(lab):
    ns = lab.netns("cli")
    cfg = write_config(lab.workdir / "c.yaml", interfaces=["tap-missing"])
    p = run("serve", "-c", str(cfg), ns=ns)
    assert p.returncode == 1, p
    lines = [line for line in p.stderr.strip().splitlines() if "lmdp:" in line]
    assert len(lines) == 1 and "tap-missing" in lines[0], p.stderr
    assert "Traceback" not in p.stderr


def test_leases_lists_the_store(tmp_path):
    cfg = write_config(tmp_path / "c.yaml")
    p = run("leases", "-c", str(cfg))
    assert p.returncode == 0, p.stderr
    assert "no leases" in p.stdout


def test_announce_unknown_mac_exits_2_known_mac_announces(lab, node):
    node.start()
    p = run("announce", "-c", str(node.config_path), "0a:58:00:00:00:99", ns=node.ns)
    assert p.returncode == 2, p
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown MAC 0a:58:00:00:00:99" in lines[0], p.stderr
    p = run("announce", "-c", str(node.config_path), "not-a-mac", ns=node.ns)
    assert p.returncode == 2 and "MAC" in p.stderr
    p = run("announce", "-c", str(node.config_path), "0a:58:0a:f4:02:1a", ns=node.ns)
    assert p.returncode == 0, p.stderr
    assert "announced 0a:58:0a:f4:02:1a on node-a" in p.stdout
    assert node.metric("lmdp_vm_arrivals_total", trigger="announce") == 1


def test_announce_without_daemon_is_one_line(lab):
    ns = lab.netns("cli")
    cfg = write_config(lab.workdir / "c.yaml")
    p = run("announce", "-c", str(cfg), "0a:58:0a:f4:02:1a", ns=ns)
    assert p.returncode == 1, p
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the lmdp daemon" in lines[0], p.stderr
