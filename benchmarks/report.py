"""Write benchmarks/results/README.md: every benchmark's table, with its machine and date.

    .venv/bin/python benchmarks/report.py      (`make bench` runs it last)

Each benchmark writes benchmarks/results/NAME.json. The README is generated from those files
only, so a benchmark that has not run is simply absent. The schema a benchmark writes
(every key but "table"/"tables" optional; extra keys are kept in the JSON and ignored here):

    {
      "benchmark": "kea",                       # NAME, as in results/NAME.json
      "title": "DHCP against Kea",              # the README heading
      "date": "2026-11-26 00:01 UTC",
      "machine": {"cpu": "AMD EPYC", "cpus": 2, "memory_gib": 23.5,
                  "python": "CPython 3.11.7", "kernel": "6.1.0", "lmdp": "cd762dd-dirty"},
      "command": "benchmarks/kea.py --family 4",  # how the figures were made
      "summary": "one paragraph of markdown above the table(s)",
      "table": {"columns": ["Rate", "Drops"],   # one table ...
                "rows": [[1000, "0.0 %"], ...],
                "align": ["r", "r"]},           # optional: "l", "r" or "c" per column
      "tables": [{"title": "DHCPv4", "columns": [...], "rows": [...]}, ...],  # ... or several
      "targets": [{"target": "1,000 interfaces attached in under 2 s",
                   "measured": "0.8 s", "met": true}],          # met: true, false or null
      "notes": ["markdown paragraph", ...]      # under the tables: method, caveats
    }

Cells are strings (written as they are) or numbers (integers with thousands separators,
floats with up to 2 decimals). A JSON without "table" or "tables" is shown through the
NAME.md beside it when there is one (the replay benchmark's); failing that, when its
"results" is a list of objects, as a table of their number, text and true/false fields
(lists and objects left out), with a "target" string above it and a "method" string below.
Order: replay, kea, arp_flood, latency, idle, scale, ports_memory, then any other
NAME.json by name. Each benchmark's `.png` is linked when it exists.

A "Targets" table comes first: every benchmark's "targets", or for replay, latency and
arp_flood (which write none) targets judged here from their results. The same table replaces
what stands between SUMMARY_START and SUMMARY_END in the project's README.md.
"""

from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
ORDER = ["replay", "kea", "arp_flood", "latency", "idle", "scale", "ports_memory"]
TITLES = {"replay": "Replay (no sockets)"}
# The project README's copy of the targets table sits between these lines.
SUMMARY_START = "<!-- benchmarks/report.py: targets -->"
SUMMARY_END = "<!-- /benchmarks/report.py -->"


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_table(table: dict) -> str:
    columns = table.get("columns", [])
    align = table.get("align") or ["l"] + ["r"] * (len(columns) - 1)
    marks = {"l": "---", "r": "---:", "c": ":---:"}
    lines = []
    if table.get("title"):
        lines += [f"**{table['title']}**", ""]
    lines.append("| " + " | ".join(_cell(c) for c in columns) + " |")
    lines.append("|" + "|".join(marks.get(a, "---") for a in align) + "|")
    for row in table.get("rows", []):
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines)


def generic_table(results: list) -> dict | None:
    """A table of the scalar fields of a list of result objects (a schema-less JSON)."""
    rows = [r for r in results if isinstance(r, dict)]
    columns: list[str] = []
    for r in rows:
        for key, value in r.items():
            if key not in columns and isinstance(value, str | int | float | bool | None):
                columns.append(key)
    if not rows or not columns:
        return None
    return {
        "columns": columns,
        "rows": [[r.get(c) for c in columns] for r in rows],
        "align": ["l" if isinstance(rows[0].get(c), str) else "r" for c in columns],
    }


def machine_line(data: dict) -> str:
    m = data.get("machine") or {}
    parts = []
    if m.get("cpu"):
        parts.append(
            f"{m['cpu']} ({m.get('cpus', '?')} CPUs"
            + (f", {m['memory_gib']} GiB" if m.get("memory_gib") else "")
            + ")"
        )
    for key in ("python", "kernel"):
        if m.get(key):
            parts.append(f"{'Linux ' if key == 'kernel' else ''}{m[key]}")
    if m.get("lmdp"):
        parts.append(f"lmdp {m['lmdp']}")
    if data.get("date"):
        parts.append(data["date"])
    return "Measured on " + ", ".join(parts) + "." if parts else ""


def render_one(data: dict, md_fallback: str | None = None, png: str | None = None) -> str:
    name = data.get("benchmark", "?")
    heading = data.get("title") or TITLES.get(name) or name
    out = [f"## {heading}", ""]
    line = machine_line(data)
    if line:
        out += [line, ""]
    if data.get("command"):
        out += [f"Command: `{data['command']}`", ""]
    if data.get("summary"):
        out += [data["summary"], ""]
    tables = data.get("tables") or ([data["table"]] if data.get("table") else [])
    for t in tables:
        out += [render_table(t), ""]
    if not tables and md_fallback:
        out += [md_fallback.strip(), ""]
    elif not tables and isinstance(data.get("results"), list):
        generic = generic_table(data["results"])
        if generic:
            if isinstance(data.get("target"), str):
                out += [f"Target: {data['target']}", ""]
            out += [render_table(generic), ""]
            if isinstance(data.get("method"), str):
                out += [data["method"], ""]
    targets = data.get("targets") or []
    if targets:
        out += [
            render_table(
                {
                    "columns": ["Target", "Measured", "Verdict"],
                    "align": ["l", "l", "l"],
                    "rows": [
                        [
                            t.get("target"),
                            t.get("measured"),
                            "-" if t.get("met") is None else ("met" if t["met"] else "NOT met"),
                        ]
                        for t in targets
                    ],
                }
            ),
            "",
        ]
    for note in data.get("notes") or []:
        out += [note, ""]
    if png:
        out += [f"![{name}]({png})", ""]
    return "\n".join(out)


def _ms(us: float) -> str:
    return f"{us / 1000:.2f} ms"


def derived_targets(name: str, data: dict) -> list[dict]:
    """Targets of the benchmarks that write none themselves, judged from their results."""
    results = [r for r in data.get("results") or [] if isinstance(r, dict)]
    if name == "replay":
        return [
            {
                "target": f"replay, one core: {r['label']} at least "
                f"{r['target_replies_per_s']:,} replies/s",
                "measured": f"{r['median_replies_per_s']:,.0f}/s (median)",
                "met": r["median_replies_per_s"] >= r["target_replies_per_s"],
            }
            for r in results
            if r.get("target_replies_per_s") and r.get("median_replies_per_s") is not None
        ]
    if name == "latency":
        mine = [r for r in results if r.get("responder") != "kernel" and "p99_us" in r]
        if not mine:
            return []
        return [
            {
                "target": data.get("target") or "p99 reply latency under 1 ms at low rate",
                "measured": ", ".join(
                    f"{r.get('label')}, {r.get('kind')}: {_ms(r['p99_us'])}" for r in mine
                ),
                "met": all(r["p99_us"] < 1000 and not r.get("missing") for r in mine),
            }
        ]
    if name == "arp_flood":
        kernel = next((r for r in results if r.get("responder") == "kernel"), None)
        mine = [r for r in results if r.get("responder") != "kernel"]
        if kernel is None or not mine:
            return []
        default = next((r for r in mine if r.get("responder") == "default"), mine[0])

        def text(r: dict) -> str:
            return (
                f"{r.get('label')}: {100 * r['median_share_answered']:.1f} % answered, "
                f"{r.get('ratio_to_kernel_rate', 0):.2f}x the kernel's rate"
            )

        return [
            {
                "target": data.get("target")
                or "100 % of an ARP flood answered at the kernel's rate",
                "measured": "; ".join(
                    text(r) for r in [default, *[m for m in mine if m is not default]]
                )
                + f" (kernel: {kernel['median_replies_per_s']:,.0f} replies/s)",
                "met": default["median_share_answered"] >= 1.0
                and default.get("ratio_to_kernel_rate", 0) >= 1.0,
            }
        ]
    return []


def load(results_dir: str = RESULTS) -> list[tuple[str, dict | Exception]]:
    """Every results/NAME.json in report order, parsed (or the error that stopped it)."""
    names = sorted(f[:-5] for f in os.listdir(results_dir) if f.endswith(".json"))
    names = [n for n in ORDER if n in names] + [n for n in names if n not in ORDER]
    out: list[tuple[str, dict | Exception]] = []
    for name in names:
        try:
            with open(os.path.join(results_dir, f"{name}.json")) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            out.append((name, e))
            continue
        data["benchmark"] = name  # the file's name (a variant run may carry its parent's)
        out.append((name, data))
    return out


def summary(results_dir: str = RESULTS, link: bool = True) -> str:
    """The targets of every benchmark in one table (the project README carries it, with a
    `link` to the full tables)."""
    rows = []
    for name, data in load(results_dir):
        if isinstance(data, Exception) or name not in ORDER:
            continue
        for t in data.get("targets") or derived_targets(name, data):
            verdict = "-" if t.get("met") is None else ("met" if t["met"] else "**not met**")
            rows.append([t.get("target"), t.get("measured"), verdict, data.get("date", "?")])
    table = render_table(
        {
            "columns": ["Target", "Measured", "Verdict", "Run"],
            "align": ["l", "l", "l", "l"],
            "rows": rows,
        }
    )
    machines = set()
    for _, d in load(results_dir):
        m = isinstance(d, dict) and d.get("machine")
        if m:
            keep = {k: m[k] for k in ("cpu", "cpus", "python", "kernel") if k in m}
            machines.add(machine_line({"machine": keep})[len("Measured on ") : -1])
    where = "; ".join(sorted(machines))
    text = f"{table}\n\nMachine: {where}."
    if link:
        text += (
            " Each run's lmdp commit, command and full tables: "
            "[`benchmarks/results/README.md`](benchmarks/results/README.md)."
        )
    return text


def update_readme(path: str, text: str) -> bool:
    """Put `text` between the summary markers of the README at `path`; False if it has none."""
    with open(path) as f:
        readme = f.read()
    start = readme.find(SUMMARY_START)
    end = readme.find(SUMMARY_END, start) if start >= 0 else -1
    if end < 0:
        return False
    readme = readme[: start + len(SUMMARY_START)] + "\n" + text + "\n" + readme[end:]
    with open(path, "w") as f:
        f.write(readme)
    return True


def build(results_dir: str = RESULTS) -> str:
    out = [
        "# lmdp benchmark results",
        "",
        "Generated by `benchmarks/report.py` from `benchmarks/results/*.json` "
        "(`make bench` runs every benchmark, then this). Each section names the machine and "
        "the date of its own run.",
        "",
        "## Targets",
        "",
        summary(results_dir, link=False),
        "",
    ]
    for name, data in load(results_dir):
        if isinstance(data, Exception):
            out += [f"## {name}", "", f"(unreadable results/{name}.json: {data})", ""]
            continue
        md = os.path.join(results_dir, f"{name}.md")
        fallback = open(md).read() if os.path.exists(md) else None  # noqa: SIM115
        png = f"{name}.png" if os.path.exists(os.path.join(results_dir, f"{name}.png")) else None
        out.append(render_one(data, fallback, png))
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    text = build()
    path = os.path.join(RESULTS, "README.md")
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(path)}", file=sys.stderr)
    readme = os.path.join(HERE, "..", "README.md")
    if update_readme(readme, summary()):
        print(f"updated the targets table in {os.path.relpath(readme)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
