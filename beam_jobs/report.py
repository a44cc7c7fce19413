"""The preprocessing data report: ONE self-contained HTML file with inline SVG bar charts.

Written by the Beam job as ``OUT/report.html`` from ``counts.json`` and the TFT statistics
(``yt8m.transform.statistics``): label frequency (videos per class, most frequent first),
frames per video (histogram from the counts, quantiles from TFT), fold balance, quarantine
reasons, unreadable bytes and per-file counts. No plotting dependency (matplotlib is not
installed here): the charts are plain SVG generated below.
"""

from __future__ import annotations

import html

import numpy as np

from yt8m import storage

_W, _BAR_H, _LABEL_W = 640, 18, 170
_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em}table{border-collapse:collapse;font-size:.85em}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}
.bad{color:#b00}.ok{color:#080}svg text{font-size:11px;font-family:system-ui,sans-serif}"""


def bar_chart(title: str, items: list[tuple[str, float]], color: str = "#4a78b5", unit: str = "") -> str:
    """Horizontal bars, one per (label, value); an inline ``<svg>`` element."""
    items = list(items)
    if not items:
        return f"<p><em>{html.escape(title)}: nothing to show</em></p>"
    top = max((v for _, v in items), default=0) or 1
    height = _BAR_H * len(items) + 24
    rows = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" role="img" '
            f'aria-label="{html.escape(title)}"><title>{html.escape(title)}</title>']
    for i, (label, value) in enumerate(items):
        y = 4 + i * _BAR_H
        width = (_W - _LABEL_W - 80) * (value / top)
        text = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3g}"
        rows.append(f'<text x="{_LABEL_W - 6}" y="{y + 13}" text-anchor="end">{html.escape(str(label))}</text>'
                    f'<rect x="{_LABEL_W}" y="{y}" width="{width:.1f}" height="{_BAR_H - 4}" fill="{color}"/>'
                    f'<text x="{_LABEL_W + width + 4:.1f}" y="{y + 13}">{text}{html.escape(unit)}</text>')
    rows.append("</svg>")
    return "".join(rows)


def _table(header: list[str], rows: list[list], left: int = 1) -> str:
    head = "".join(f'<th class="{"l" if i < left else ""}">{html.escape(h)}</th>' for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{html.escape(str(c))}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render(counts: dict, stats: dict | None, num_classes: int, top_labels: int = 30) -> str:
    """The report's HTML text."""
    t = counts["total"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>YT8M preprocessing report</title>"
             f"<style>{_CSS}</style></head><body><h1>YT8M preprocessing report</h1>"]
    ok = counts.get("reconciled", True)
    parts.append(
        f"<p>Input <code>{html.escape(str(counts.get('input_pattern', '')))}</code>: "
        f"{counts.get('num_input_files', len(counts['per_file']))} files, {t['size_bytes']:,} bytes; "
        f"{t['read']:,} records read, {t['written_total']:,} written, {t['quarantined_total']:,} quarantined, "
        f"{t['unreadable_bytes']:,} bytes unreadable. Counts "
        f"{'<span class=ok>reconcile</span>' if ok else '<span class=bad>DO NOT reconcile</span>'}.</p>")

    parts.append("<h2>Label frequency (videos per class)</h2>")
    if stats is not None:
        label_counts = np.asarray(stats["label_counts"]).astype(np.int64)
        order = np.argsort(-label_counts, kind="stable")[:top_labels]
        present = int((label_counts > 0).sum())
        parts.append(f"<p>{present:,} of {num_classes:,} classes have at least one video; the {len(order)} most "
                     f"frequent:</p>")
        parts.append(bar_chart("videos per class", [(f"class {int(c)}", int(label_counts[c])) for c in order]))
    else:
        parts.append("<p><em>no video written: no statistics</em></p>")

    parts.append("<h2>Frames per video</h2>")
    parts.append(bar_chart("videos by number of stored frames",
                           list(counts.get("frames_histogram", {}).items()), color="#6a9f58"))
    if stats is not None:
        q = np.asarray(stats["num_frames_quantiles"])
        parts.append(f"<p>TFT: min {int(stats['num_frames_min'])}, max {int(stats['num_frames_max'])}, "
                     f"{int(stats['num_frames_total']):,} frames in {int(stats['num_videos']):,} videos; "
                     f"deciles {', '.join(f'{x:.0f}' for x in q)}. Features use the first 300 frames.</p>")

    parts.append("<h2>Fold balance</h2>")
    parts.append(bar_chart("videos per split", list(t["written"].items()), color="#8c6bb1"))

    parts.append("<h2>Quarantine</h2>")
    reasons = [(r, n) for r, n in t["quarantined"].items() if n]
    parts.append(bar_chart("quarantined records by reason", reasons, color="#c0504d") if reasons
                 else "<p>No record quarantined.</p>")
    damaged = [(f, u) for f, e in counts["per_file"].items() for u in e["unreadable"]]
    if damaged:
        parts.append("<p>Unreadable byte ranges (the rest of each file from the offset):</p>" + _table(
            ["file", "reason", "offset", "bytes"],
            [[f, u["reason"], f"{u['offset']:,}", f"{u['bytes']:,}"] for f, u in damaged]))

    parts.append("<h2>Per input file</h2>")
    rows = []
    for f, e in counts["per_file"].items():
        rows.append([f, f"{e['size_bytes']:,}", e["read"], e["written_total"], e["quarantined_total"],
                     f"{e['unreadable_bytes']:,}"])
    parts.append(_table(["file", "bytes", "read", "written", "quarantined", "unreadable bytes"], rows))
    if counts.get("problems"):
        parts.append("<h2 class=bad>Reconciliation problems</h2><ul>" + "".join(
            f"<li>{html.escape(p)}</li>" for p in counts["problems"]) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: str, counts: dict, stats: dict | None, num_classes: int) -> str:
    """Render and write the report (local or gs://); returns ``path``."""
    storage.write_text(path, render(counts, stats, num_classes))
    return path
