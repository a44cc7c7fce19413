"""The artifact graph of a local run: which data, configs and members produced the published model.

Built from what the run recorded: each task's executor input (its input artifacts with their
metadata, its parameters, where its outputs go) and executor output (the output artifacts'
metadata, returned values). ``yt8m lineage RUN_DIR`` prints it as a tree from the published
model back to the raw data, and writes an HTML page with a picture of the whole graph (inline
SVG, one column per depth).
"""

from __future__ import annotations

import dataclasses
import html
import json
import os

from yt8m import storage
from yt8m_pipeline import local_run, rerun

# Metadata worth showing next to an artifact, in this order (others stay in the HTML table).
_SHOWN = ("source", "source_fingerprint", "records_read", "records_written", "records_quarantined", "name", "family",
          "preset", "config_hash", "fold", "oof_gap", "holdout_gap", "members", "size_bytes", "gap", "passed", "version")


@dataclasses.dataclass
class Node:
    id: str
    kind: str  # "data" | "task" | "artifact" | "published"
    label: str
    detail: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Graph:
    nodes: dict[str, Node]
    edges: list[tuple[str, str]]  # (from, to): input -> task, task -> output

    def parents(self, node_id: str) -> list[str]:
        return [a for a, b in self.edges if b == node_id]


def _short(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # numbers travel as floats in protobuf Structs
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, list):
        return ", ".join(_short(v) for v in value)
    text = str(value)
    return text if len(text) <= 60 else text[:28] + "..." + text[-28:]


def build_graph(workdir: str, run_id: str) -> Graph:
    nodes: dict[str, Node] = {}
    edges: list[tuple[str, str]] = []
    for record in rerun.task_records(workdir, run_id):
        executor_input = local_run.executor_input(record["command"])
        task_id = f"task:{record['task']}"
        params = executor_input.get("inputs", {}).get("parameterValues", {})
        shown_params = {k: v for k, v in params.items() if not isinstance(v, (dict, list))}
        if isinstance(params.get("model_config"), dict):
            shown_params["model_config"] = params["model_config"].get("name")
        nodes[task_id] = Node(task_id, "task", record["label"], {"task": record["task"], **shown_params,
                                                                  "return_code": record.get("return_code")})
        for name, artifact_list in executor_input.get("inputs", {}).get("artifacts", {}).items():
            for artifact in artifact_list.get("artifacts", []):
                uri = artifact["uri"]
                kind = artifact.get("type", {}).get("schemaTitle", "system.Artifact").split(".")[-1]
                if uri not in nodes:
                    nodes[uri] = Node(uri, "artifact", f"{kind} {name}", dict(artifact.get("metadata", {})))
                else:
                    nodes[uri].detail.update(artifact.get("metadata", {}))
                edges.append((uri, task_id))
        for name in ("input_pattern", "train_pattern", "test_pattern"):
            if params.get(name):
                data_id = f"data:{params[name]}"
                nodes.setdefault(data_id, Node(data_id, "data", f"raw data {params[name]}"))
                edges.append((data_id, task_id))
        outputs = executor_input.get("outputs", {})
        produced = {}
        output_file = outputs.get("outputFile")
        if output_file and os.path.exists(output_file):
            produced = storage.read_json(output_file)
        for name, artifact_list in outputs.get("artifacts", {}).items():
            for artifact in artifact_list.get("artifacts", []):
                uri = artifact["uri"]
                kind = artifact.get("type", {}).get("schemaTitle", "system.Artifact").split(".")[-1]
                metadata = {}
                for out in produced.get("artifacts", {}).get(name, {}).get("artifacts", []):
                    metadata.update(out.get("metadata", {}))
                node = nodes.setdefault(uri, Node(uri, "artifact", f"{kind} {name}"))
                node.detail.update(metadata)
                edges.append((task_id, uri))
        returned = produced.get("parameterValues", {}).get("Output")
        if record["folder"].startswith("publish") and isinstance(returned, str):
            node_id = f"published:{returned}"
            nodes[node_id] = Node(node_id, "published", f"published model {returned}", {"version": returned})
            edges.append((task_id, node_id))
    # artifacts no task of the run produced (the imported raw data): name where they are
    for node in nodes.values():
        if node.kind == "artifact" and not any(b == node.id for _, b in edges):
            node.kind = "data"
            node.label = f"{node.label} {node.id}"
    return Graph(nodes, edges)


def _describe(node: Node) -> str:
    shown = [f"{k}={_short(node.detail[k])}" for k in _SHOWN if k in node.detail and node.detail[k] not in ("", None)]
    if node.kind == "task":
        extras = [f"{k}={_short(v)}" for k, v in node.detail.items()
                  if k in ("model_config", "fold", "folds", "num_classes")]
        if isinstance(node.detail.get("gate_config"), dict) and "min_gap" in node.detail["gate_config"]:
            extras.append(f"min_gap={_short(node.detail['gate_config']['min_gap'])}")
        shown = extras
    return node.label + (f"  [{'; '.join(shown)}]" if shown else "")


def tree_lines(graph: Graph, root: str | None = None) -> list[str]:
    """The graph as an upside-down tree: the published model (or the last artifact), then what produced it."""
    if root is None:
        published = [n for n in graph.nodes.values() if n.kind == "published"]
        if published:
            root = published[0].id
        else:
            sinks = [n for n in graph.nodes if not any(a == n for a, _ in graph.edges)]
            root = sinks[-1] if sinks else next(iter(graph.nodes))
    lines, seen = [], set()

    def walk(node_id: str, prefix: str, last: bool, depth: int):
        node = graph.nodes[node_id]
        connector = "" if depth == 0 else ("└─ " if last else "├─ ")
        again = node_id in seen and graph.parents(node_id)
        lines.append(prefix + connector + (node.label + "  (see above)" if again else _describe(node)))
        if again:
            return
        seen.add(node_id)
        parents = graph.parents(node_id)
        child_prefix = prefix + ("" if depth == 0 else ("   " if last else "│  "))
        for i, parent in enumerate(parents):
            walk(parent, child_prefix, i == len(parents) - 1, depth + 1)

    walk(root, "", True, 0)
    return lines


def _depths(graph: Graph) -> dict[str, int]:
    depth = {n: 0 for n in graph.nodes}
    for _ in range(len(graph.nodes)):
        changed = False
        for a, b in graph.edges:
            if depth[b] < depth[a] + 1:
                depth[b] = depth[a] + 1
                changed = True
        if not changed:
            break
    return depth


_COLOURS = {"data": "#fde68a", "task": "#bfdbfe", "artifact": "#e5e7eb", "published": "#bbf7d0"}


def to_html(graph: Graph, title: str) -> str:
    depth = _depths(graph)
    columns: dict[int, list[str]] = {}
    for node_id in graph.nodes:
        columns.setdefault(depth[node_id], []).append(node_id)
    box_w, box_h, gap_x, gap_y = 210, 46, 60, 18
    position = {}
    for d, ids in sorted(columns.items()):
        for i, node_id in enumerate(ids):
            position[node_id] = (20 + d * (box_w + gap_x), 20 + i * (box_h + gap_y))
    width = 40 + (max(columns) + 1) * (box_w + gap_x)
    height = 40 + max(len(ids) for ids in columns.values()) * (box_h + gap_y)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             'font-size="11"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
             'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>']
    for a, b in graph.edges:
        (x1, y1), (x2, y2) = position[a], position[b]
        parts.append(f'<line x1="{x1 + box_w}" y1="{y1 + box_h / 2}" x2="{x2}" y2="{y2 + box_h / 2}" stroke="#555" '
                     'stroke-width="1" marker-end="url(#arrow)"/>')
    for node_id, node in graph.nodes.items():
        x, y = position[node_id]
        label = node.label if len(node.label) <= 34 else node.label[:16] + "..." + node.label[-15:]
        detail = "; ".join(f"{k}={_short(node.detail[k])}" for k in _SHOWN if k in node.detail)[:40]
        parts.append(f'<g><title>{html.escape(node_id)}</title><rect x="{x}" y="{y}" width="{box_w}" '
                     f'height="{box_h}" rx="6" fill="{_COLOURS[node.kind]}" stroke="#333"/>'
                     f'<text x="{x + 8}" y="{y + 18}">{html.escape(label)}</text>'
                     f'<text x="{x + 8}" y="{y + 34}" fill="#444">{html.escape(detail)}</text></g>')
    parts.append("</svg>")
    rows = "".join(f"<tr><td>{html.escape(n.kind)}</td><td>{html.escape(n.label)}</td><td><code>"
                   f"{html.escape(n.id)}</code></td><td><code>{html.escape(json.dumps(n.detail, default=str))[:600]}"
                   "</code></td></tr>" for n in graph.nodes.values())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
            f"<h1>{html.escape(title)}</h1>{''.join(parts)}<h2>Nodes</h2><table border='1' cellpadding='4'>"
            f"<tr><th>kind</th><th>label</th><th>id</th><th>metadata</th></tr>{rows}</table></body></html>")


def lineage(run_dir: str, run_id: str | None = None, html_path: str | None = None) -> tuple[list[str], str]:
    """(tree lines, HTML path) for a local run."""
    workdir, run_id = rerun.find_run(run_dir, run_id)
    graph = build_graph(workdir, run_id)
    html_path = html_path or os.path.join(workdir, "logs", run_id, "lineage.html")
    storage.write_text(html_path, to_html(graph, f"yt8m lineage: run {run_id}"))
    return tree_lines(graph), html_path
