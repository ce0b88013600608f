"""Write the results as Markdown (summary, details, targets), JSON (by run.py) and a PNG chart."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

SCENARIO_TITLES = {
    "first": "first deploy (empty bucket)",
    "nochange": "no-change redeploy, fresh runner",
    "changed": "redeploy, 1% of files changed",
    "deleted": "redeploy, 1% of files deleted locally",
    "pruned": "redeploy, 1% deleted locally, --prune (aws s3 sync: --delete)",
    "manifest": "no-change redeploy, S3ManifestStaticStorage",
}
SHORT = {
    "first": "first",
    "nochange": "no change",
    "changed": "1% changed",
    "deleted": "1% deleted",
    "pruned": "1% deleted, pruned",
    "manifest": "manifest",
}
KINDS = ("GET", "HEAD", "PUT", "LIST", "DELETE", "POST")
COLLECTFAST = ("cf-cold", "cf-warm", "cf-verified", "cf-trusting", "cf-upload-all")


def median(cell: dict[str, Any], key: str) -> float:
    return float(statistics.median(r[key] for r in cell["runs"]))


def median_run(cell: dict[str, Any]) -> dict[str, Any]:
    """The run whose wall time is the median (the lower middle one for an even count)."""
    runs = sorted(cell["runs"], key=lambda r: r["seconds"])
    return dict(runs[(len(runs) - 1) // 2])


def cells_by(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["contender"], c["scenario"]): c for c in data["cells"]}


def _ok(cell: dict[str, Any] | None) -> bool:
    return bool(cell and cell["status"] == "ok" and cell["runs"])


def _labels(data: dict[str, Any]) -> dict[str, str]:
    return {c["key"]: c["label"] + (f" ({c['version']})" if c.get("version") else "") for c in data["contenders"]}


def _scenarios(data: dict[str, Any]) -> list[str]:
    present = {c["scenario"] for c in data["cells"]}
    return [s for s in SCENARIO_TITLES if s in present]


def summary_table(data: dict[str, Any]) -> list[str]:
    cells = cells_by(data)
    scenarios = _scenarios(data)
    lines = [
        "| contender | " + " | ".join(SHORT[s] for s in scenarios) + " |",
        "|---|" + "---:|" * len(scenarios),
    ]
    for c in data["contenders"]:
        row = [_labels(data)[c["key"]]]
        for s in scenarios:
            cell = cells.get((c["key"], s))
            floor = cells.get(("floor", s))
            if cell is None:
                row.append("")
            elif not _ok(cell):
                row.append(cell["status"])
            else:
                text = f"{median(cell, 'seconds'):.2f} s"
                if _ok(floor) and c["key"] != "floor":
                    text += f" ({median(cell, 'seconds') / median(floor, 'seconds'):.1f}x)"  # type: ignore[arg-type]
                if len(cell["runs"]) == 1:
                    text += " ¹"
                row.append(text)
        lines.append("| " + " | ".join(row) + " |")
    return lines


def detail_table(data: dict[str, Any], scenario: str) -> list[str]:
    labels = _labels(data)
    lines = [
        "| contender | wall s | n | requests | "
        + " | ".join(KINDS)
        + " | MB up | peak RSS MB | mismatched | missing | stale | notes |",
        "|---|---:|---:|---:|" + "---:|" * len(KINDS) + "---:|---:|---:|---:|---:|---|",
    ]
    for cell in (c for c in data["cells"] if c["scenario"] == scenario):
        label = labels.get(cell["contender"], cell["contender"])
        if not _ok(cell):
            lines.append(f"| {label} | {cell['status']} |" + " |" * (len(KINDS) + 7) + f" {cell['note']} |")
            continue
        run = median_run(cell)
        correctness = run.get("correctness")
        if correctness:
            checks = [str(correctness[k]) for k in ("mismatched", "missing", "stale")]
            extra = correctness["examples"]["extra"]
            note_extra = f"extra objects: {', '.join(extra)}" if extra else ""
        else:
            checks, note_extra = ["–"] * 3, ""
        spread = ""
        if len(cell["runs"]) > 1:
            seconds = [r["seconds"] for r in cell["runs"]]
            spread = f" ({min(seconds):.2f}–{max(seconds):.2f})"
        notes = "; ".join(x for x in (cell["note"], note_extra) if x)
        lines.append(
            f"| {label} | {median(cell, 'seconds'):.2f}{spread} | {len(cell['runs'])} | {run['requests_total']} | "
            + " | ".join(str(run["requests"][k]) for k in KINDS)
            + f" | {run['bytes_uploaded'] / 1e6:.1f} | {max(r['peak_rss_mb'] for r in cell['runs']):.0f} | "
            + " | ".join(checks)
            + f" | {notes} |"
        )
    return lines


def _get(data: dict[str, Any], key: str, scenario: str) -> dict[str, Any] | None:
    cell = cells_by(data).get((key, scenario))
    return cell if _ok(cell) else None


def targets(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, verdict, figures) for the issue's targets that this run's data can check."""
    out: list[tuple[str, str, str]] = []
    files = data["config"]["files"]
    lists = math.ceil(files / 1000)
    changed = data["config"]["changed"]
    floor = {s: _get(data, "floor", s) for s in SCENARIO_TITLES}

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("met" if ok else "MISSED")

    def req(cell: dict[str, Any]) -> int:
        return int(median_run(cell)["requests_total"])

    for key, limit, text in (
        ("cf-verified", 1 + lists, f"≤ 1 + ceil(files/1000) = {1 + lists} requests"),
        ("cf-trusting", 1, "exactly 1 request"),
    ):
        cell = _get(data, key, "nochange")
        if cell is None:
            out.append((f"no change, {key}: {text}, 0 bytes", "n/a", "row not run or not available"))
            continue
        run = median_run(cell)
        ok = run["requests_total"] <= limit if key == "cf-verified" else run["requests_total"] == limit
        ok = ok and run["bytes_uploaded"] == 0
        out.append(
            (
                f"no change, {key}: {text}, 0 bytes",
                verdict(ok),
                f"{run['requests_total']} requests, {run['bytes_uploaded']} bytes",
            )
        )
    for key in COLLECTFAST[:-1]:  # upload-everything skips nothing by design
        cell = _get(data, key, "nochange")
        if cell is None or floor["nochange"] is None:
            continue
        ratio = median(cell, "seconds") / median(floor["nochange"], "seconds")
        bound = 1.0 if key == "cf-verified" else 1.3  # issue 11: the listing overlaps the hashing
        out.append(
            (
                f"no change, {key}: wall ≤ {bound}x floor",
                verdict(ratio <= bound),
                f"{median(cell, 'seconds'):.2f} s vs floor {median(floor['nochange'], 'seconds'):.2f} s = {ratio:.2f}x",
            )
        )
        old = _get(data, "collectfast-2.2.0", "nochange")
        if old is not None:
            factor = req(old) / max(1, req(cell))
            out.append(
                (
                    f"no change, {key}: ≥ 20x fewer requests than Collectfast 2.2.0",
                    verdict(factor >= 20),
                    f"{req(cell)} vs {req(old)} = {factor:.0f}x",
                )
            )
        for peer in ("collectfast-2.2.0", "collectfasta"):
            other = _get(data, peer, "nochange")
            if other is not None:
                factor = median(other, "seconds") / median(cell, "seconds")
                out.append(
                    (
                        f"no change, {key}: ≥ 5x less wall time than {peer}",
                        verdict(factor >= 5),
                        f"{median(cell, 'seconds'):.2f} s vs {median(other, 'seconds'):.2f} s = {factor:.1f}x",
                    )
                )
    for key in COLLECTFAST:
        cell = _get(data, key, "changed")
        if cell is None:
            continue
        manifest_write = 1 if key in ("cf-verified", "cf-trusting") else 0
        run = median_run(cell)
        puts = run["requests"]["PUT"]
        if key == "cf-upload-all":
            continue
        out.append(
            (
                f"1% changed, {key}: exactly one PUT per changed file ({changed}) + {manifest_write} manifest write",
                verdict(puts == changed + manifest_write),
                f"{puts} PUT, {run['requests']['POST']} POST",
            )
        )
    deleted = data["config"]["deleted"]
    for key in ("floor", *COLLECTFAST):
        cell = _get(data, key, "pruned")
        if cell is None:
            continue
        run = median_run(cell)
        stale = run.get("correctness", {}).get("stale")
        posts = run["requests"]["POST"]
        out.append(
            (
                f"1% deleted with --prune, {key}: 0 stale objects left, one DeleteObjects per 1,000",
                verdict(stale == 0 and posts == math.ceil(deleted / 1000)),
                f"{stale} stale of {deleted} deleted, {posts} POST",
            )
        )
    for key in COLLECTFAST:
        cell = _get(data, key, "first")
        if cell is None or floor["first"] is None:
            continue
        ratio = median(cell, "seconds") / median(floor["first"], "seconds")
        figures = f"{median(cell, 'seconds'):.2f} s vs floor {median(floor['first'], 'seconds'):.2f} s = {ratio:.2f}x"
        aws = _get(data, "aws", "first")
        if aws is not None:
            figures += f"; aws s3 sync {median(aws, 'seconds'):.2f} s"
        out.append((f"first deploy, {key}: wall ≤ 1.2x floor", verdict(ratio <= 1.2), figures))
    peaks = [
        max(r["peak_rss_mb"] for r in c["runs"]) for c in data["cells"] if c["contender"] in COLLECTFAST and _ok(c)
    ]
    if peaks:
        n = data["config"]["n"]
        ok = max(peaks) < 150 if n >= 100_000 else None
        out.append(
            (
                f"peak RSS < 150 MB at N = 100,000 (this run: N = {n})",
                verdict(ok),
                f"max {max(peaks):.0f} MB over collectfast rows",
            )
        )
    bad = []
    for c in data["cells"]:
        if c["contender"] in COLLECTFAST and _ok(c):
            for r in c["runs"]:
                k = r.get("correctness", {})
                if k.get("mismatched") or k.get("missing"):
                    bad.append(
                        f"{c['contender']}/{c['scenario']}: {k['mismatched']} mismatched, {k['missing']} missing"
                    )
    out.append(
        (
            "zero mismatched or missing objects, every collectfast row",
            verdict(not bad),
            "; ".join(bad) or "all runs clean",
        )
    )
    return out


def chart(data: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cells = cells_by(data)
    scenarios = _scenarios(data)
    rows = [c for c in data["contenders"] if any(_ok(cells.get((c["key"], s))) for s in scenarios)]
    width = 0.8 / max(1, len(rows))
    fig, ax = plt.subplots(figsize=(13, 6.5))
    colors = plt.get_cmap("tab20").colors
    for i, c in enumerate(rows):
        xs, ys = [], []
        for j, s in enumerate(scenarios):
            cell = cells.get((c["key"], s))
            if _ok(cell):
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(median(cell, "seconds"))  # type: ignore[arg-type]
        ax.bar(xs, ys, width, label=c["label"], color=colors[i % len(colors)])
    ax.set_yscale("log")
    ax.set_xticks(range(len(scenarios)), [SCENARIO_TITLES[s] for s in scenarios], fontsize=8)
    ax.set_ylabel("wall seconds (median, log scale)")
    cfg = data["config"]
    ax.set_title(
        f"collectstatic to a local S3 server, {cfg['delay_ms']:g} ms per request, "
        f"{cfg['files']} files ({cfg['large_files']} over 8 MiB)"
    )
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(0, -0.1))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def markdown(data: dict[str, Any], chart_name: str | None) -> str:
    cfg, m = data["config"], data["machine"]
    mb = (data.get("tree_bytes") or 0) / 1e6
    lines = [
        f"# collectfast benchmark: N = {cfg['n']:,}",
        "",
        f"{cfg['files']:,} files ({cfg['n']:,} synthetic + Django admin's; {cfg['large_files']} over 8 MiB; "
        f"{mb:.0f} MB), seed {cfg['seed']}; {cfg['delay_ms']:g} ms added to every request; "
        f"{cfg['threads']} workers for every parallel contender; median of up to {cfg['repeats']} runs.",
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Python {m['python']}, {m['platform']}.",
        f"collectfast source: {m.get('collectfast_source', '?')}; load average at the end: "
        f"{', '.join(f'{x:.1f}' for x in m.get('load_average', ()))}.",
        f"Total time of this run: {data['elapsed_s'] / 60:.1f} min.",
        "",
        "## Wall time (median; in brackets: x the floor of the same scenario)",
        "",
        *summary_table(data),
        "",
        f"¹ one run only: its first run took over {cfg['slow_s']:g} s.",
        "",
    ]
    if chart_name:
        lines += [f"![wall time per scenario]({chart_name})", ""]
    lines += ["## Targets", "", "| target | verdict | figures |", "|---|---|---|"]
    lines += [f"| {t} | {v} | {f} |" for t, v, f in targets(data)]
    lines.append("")
    for s in _scenarios(data):
        lines += [f"## {SCENARIO_TITLES[s]}", "", *detail_table(data, s), ""]
    lines += [
        "Requests are counted by the server, by kind; MB up is the request bodies of PUT and POST. "
        "Correctness is checked after every run: mismatched = an object whose bytes differ from the local "
        "file, missing = no object, stale = an object whose local file was deleted (only the pruning "
        "scenario deletes remote files: the plain 1%-deleted one leaves them all), extra = objects that are "
        "no static file (collectfast's own manifest). Peak RSS is the contender process's, from wait4.",
        "",
    ]
    return "\n".join(lines)


def write(data: dict[str, Any], out: Path) -> None:
    name = f"bench-n{data['config']['n']}.png"
    drawn = chart(data, out / name)
    (out / "results.md").write_text(markdown(data, name if drawn else None))


def main() -> None:
    """Rewrite results.md and the chart from a results.json: ``python -m benchmarks.report FILE``."""
    import json
    import sys

    path = Path(sys.argv[1])
    write(json.loads(path.read_text()), path.parent)


if __name__ == "__main__":
    main()
