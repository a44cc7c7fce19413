"""The release report (HTML, shown by the pipelines UI): the gate's verdict and checks, every member's and
combiner's GAP (from the ensemble's ``ensemble.json``), the ensemble's plots (e.g. the size frontier, any
PNG the ensemble step wrote), and per-class AP on the holdout for the most frequent and rarest classes."""

from __future__ import annotations

import base64
import html
import posixpath

from yt8m import storage

ENSEMBLE_REPORT = "ensemble.json"


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def _member_rows(ensemble: dict) -> list[list]:
    rows = [[m.get("name"), m.get("family"), m.get("oof_gap"), m.get("holdout_gap"), m.get("parameters"),
             m.get("saved_model_bytes")] for m in ensemble.get("members", [])]
    rows.append(["ensemble", ensemble.get("combiner", "average"), ensemble.get("oof_gap"), ensemble.get("holdout_gap"),
                 None, ensemble.get("saved_model_bytes")])
    return rows


def _combiner_rows(ensemble: dict) -> list[list]:
    """``ensemble.json``'s ``combiners`` (name -> {oof_gap, ...} or name -> GAP), if the ensemble wrote any."""
    rows = []
    for name, value in (ensemble.get("combiners") or {}).items():
        gap = value.get("oof_gap") if isinstance(value, dict) else value
        rows.append([name, gap])
    return rows


def _images(model_dir: str) -> list[tuple[str, str]]:
    """(name, base64 PNG) of every PNG directly in ``model_dir`` or one folder below it."""
    found = []
    for pattern in ("*.png", "*/*.png"):
        for path in sorted(storage.gfile.glob(storage.join(model_dir, pattern))):
            with storage.gfile.GFile(path, "rb") as f:
                found.append((posixpath.relpath(path, model_dir), base64.b64encode(f.read()).decode()))
    return found


def render(result, model_dir: str, dataset_path: str = "") -> str:
    """The report page for a ``gate.GateResult`` of the merged model in ``model_dir``."""
    ensemble_file = storage.join(model_dir, ENSEMBLE_REPORT)
    ensemble = storage.read_json(ensemble_file) if storage.gfile.exists(ensemble_file) else {}
    verdict = "PASSED: published" if result.passed else "REFUSED: not published"
    parts = [f"<h1>Release gate: {verdict}</h1>"]
    if dataset_path:
        parts.append(f"<p>Holdout of {html.escape(dataset_path)}</p>")
    parts += ["<h2>Checks</h2>",
              _table(["check", "result", "value", "limit", "detail"],
                     [[c.name, "pass" if c.passed else "FAIL", c.value, c.limit, c.message] for c in result.checks])]
    if ensemble:
        parts += ["<h2>Members and ensemble (GAP@20)</h2>",
                  _table(["model", "family / combiner", "out-of-fold", "holdout", "parameters", "bytes"],
                         _member_rows(ensemble))]
        combiners = _combiner_rows(ensemble)
        if combiners:
            parts += ["<h2>Combiners (out-of-fold GAP@20)</h2>", _table(["combiner", "out-of-fold"], combiners)]
        teacher = ensemble.get("teacher")
        if teacher:  # a distillation round: the students above were trained on this ensemble's soft labels
            rows = [[name, g.get("oof_gap"), g.get("holdout_gap")] for name, g in teacher.get("members", {}).items()]
            rows.append([f"teacher ensemble ({teacher.get('combiner')})", teacher.get("oof_gap"), teacher.get("holdout_gap")])
            parts += ["<h2>Their teacher (the previous round's ensemble, GAP@20)</h2>",
                      _table(["teacher model", "out-of-fold", "holdout"], rows)]
    round_ = ensemble.get("distillation")
    if round_:  # the last distillation round: which ensemble it passed on (yt8m/distill_round.py)
        parts += [f"<h2>Distillation round {round_['round']}: kept the {html.escape(round_['kept'])} "
                  f"(rule {html.escape(round_['rule'])})</h2>",
                  _table(["ensemble", "combiner", "out-of-fold", "holdout"],
                         [["students (" + ", ".join(round_["students"]) + ")", round_["students_combiner"],
                           round_["students_oof_gap"], round_["students_holdout_gap"]],
                          ["teacher", round_["teacher_combiner"], round_["teacher_oof_gap"],
                           round_["teacher_holdout_gap"]]])]
    for name, data in _images(model_dir):
        parts += [f"<h2>{html.escape(name)}</h2>", f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">']
    if result.class_ap:
        parts += ["<h2>Per-class AP on the holdout: most frequent and rarest classes</h2>",
                  _table(["class", "positives", "AP"], [[r["class"], r["positives"], r["ap"]] for r in result.class_ap])]
    style = "<style>table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px}</style>"
    return f"<html><head><meta charset='utf-8'>{style}</head><body>{''.join(parts)}</body></html>\n"


def write_report(path: str, result, model_dir: str, ds=None) -> None:
    storage.write_text(path, render(result, model_dir, ds.path if ds is not None else ""))
