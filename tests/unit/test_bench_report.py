"""benchmarks/report.py: the targets table, judged from results, and the README's copy."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import report  # noqa: E402

MACHINE = {"cpu": "AMD EPYC", "cpus": 2, "python": "CPython 3.11.7", "kernel": "6.1", "lmdp": "x"}


def write(d: Path, name: str, data: dict) -> None:
    (d / f"{name}.json").write_text(json.dumps({"machine": MACHINE, "date": "D", **data}))


def test_targets_from_results_and_from_the_benchmarks_own(tmp_path):
    write(tmp_path, "replay", {"results": [
        {"label": "ARP", "median_replies_per_s": 1.6e6, "target_replies_per_s": 1500000},
        {"label": "REQUEST", "median_replies_per_s": 1.4e5, "target_replies_per_s": 150000},
        {"label": "NS", "median_replies_per_s": 1.7e6, "target_replies_per_s": None},
    ]})  # fmt: skip
    write(tmp_path, "latency", {"results": [
        {"responder": "kernel", "label": "kernel", "kind": "arp", "p99_us": 90},
        {"responder": "lmdp", "label": "lmdp", "kind": "arp", "p99_us": 190, "missing": 0},
        {"responder": "lmdp", "label": "lmdp", "kind": "dhcpv4", "p99_us": 1200, "missing": 0},
    ]})  # fmt: skip
    write(tmp_path, "arp_flood", {"results": [
        {"responder": "kernel", "median_replies_per_s": 300000, "median_share_answered": 1.0},
        {"responder": "default+noarp", "label": "lmdp (default), host ARP off",
         "median_share_answered": 1.0, "ratio_to_kernel_rate": 1.3},
        {"responder": "default", "label": "lmdp (default)", "median_share_answered": 1.0,
         "ratio_to_kernel_rate": 1.02},
    ]})  # fmt: skip
    write(tmp_path, "idle", {"targets": [{"target": "idle", "measured": "0.01 %", "met": True}]})
    rows = [line for line in report.summary(str(tmp_path)).splitlines() if line.startswith("| ")]
    verdicts = [line.rsplit("|", 3)[1].strip() for line in rows[1:]]
    # replay ARP met, REQUEST not, NS has no target; flood; latency: DHCPv4 over 1 ms; idle.
    assert verdicts == ["met", "**not met**", "met", "**not met**", "met"]
    # Judged on the default variant, named first; the others follow.
    assert rows[3].index("(default): 100.0 % answered, 1.02x") < rows[3].index("1.30x")
    assert "lmdp, dhcpv4: 1.20 ms" in rows[4] and "kernel, arp" not in rows[4]


def test_readme_copy_between_the_markers_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# x\n\nbefore\n{report.SUMMARY_START}\nold table\n{report.SUMMARY_END}\nafter\n"
    )
    assert report.update_readme(str(readme), "| new |")
    assert readme.read_text() == (
        f"# x\n\nbefore\n{report.SUMMARY_START}\n| new |\n{report.SUMMARY_END}\nafter\n"
    )
    # An end marker before the start marker is not the end of the table.
    readme.write_text(f"{report.SUMMARY_END}\n{report.SUMMARY_START}\nold\n{report.SUMMARY_END}\n")
    assert report.update_readme(str(readme), "| t |")
    assert readme.read_text() == (
        f"{report.SUMMARY_END}\n{report.SUMMARY_START}\n| t |\n{report.SUMMARY_END}\n"
    )
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert not report.update_readme(str(plain), "| new |")
    assert plain.read_text() == "no markers\n"
