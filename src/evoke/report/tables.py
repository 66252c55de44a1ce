"""The report's tables: one per task, runs and baselines, read at a glance.

A column header carries the metric's direction (``↑`` higher is better, ``↓``
lower is better; counts have none). In each metric column the best value (ties
included) is marked ``★``; a baseline that is at least as good as every
trained head of the task in that column is marked ``⚑`` (a head that only ties
a trivial baseline has not beaten it). A run's cell adds its bootstrap 95%
interval (:mod:`evoke.report.bootstrap`) as ``[lo, hi]``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field

import numpy as np

from evoke.metrics import LDL_HIGHER_IS_BETTER, LDL_LOWER_IS_BETTER

MAIN_METRICS = {
    "vce": ["top3_accuracy", "kl", "cosine", "intersection", "chebyshev", "clark", "canberra"],
    "danmaku_ldl": ["kl", "cosine", "intersection", "chebyshev", "clark", "canberra"],
    "eev": ["map", "gap", "mean_pearson"],
    "viewer_valence": ["mean_accuracy", "mean_viewer_accuracy", "average_viewer_accuracy"],
    "v2v": ["pairwise_accuracy", "listwise_accuracy", "n_pairs", "n_lists"],
    "v2v_from_emotions": ["pairwise_accuracy", "listwise_accuracy", "n_pairs", "n_lists"],
}
BEST, BASELINE_WINS = "★", "⚑"
UP, DOWN = "↑", "↓"


def direction(metric: str) -> int:
    """+1 higher is better, -1 lower is better, 0 a count (no better)."""
    if metric == "n" or metric.startswith("n_"):
        return 0
    if metric in LDL_LOWER_IS_BETTER or metric == "mse" or metric.endswith("_mse"):
        return -1
    if metric in LDL_HIGHER_IS_BETTER:
        return 1
    return 1  # accuracies, AP, GAP, Pearson r


def header_of(metric: str) -> str:
    d = direction(metric)
    return f"{metric} {UP if d > 0 else DOWN}" if d else metric


def metric_keys(task: str, runs: list[dict]) -> list[str]:
    return MAIN_METRICS.get(task) or sorted({k for r in runs for k, v in r["metrics"].get("test", {}).items()
                                             if k != "n" and isinstance(v, (int, float)) and not isinstance(v, bool)})


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x)


def _finite(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not np.isfinite(x):
        return None
    return float(x)


@dataclass
class Row:
    kind: str  # "run", "ablation" or "baseline"
    label: list[str]  # head, features, seed, n train/val/test
    values: dict[str, object]
    intervals: dict[str, list[float]] = field(default_factory=dict)
    marks: dict[str, str] = field(default_factory=dict)


@dataclass
class Table:
    task: str
    keys: list[str]
    rows: list[Row]
    unit: str

    @property
    def header(self) -> list[str]:
        return ["head", "features", "seed", f"n train/val/test ({self.unit})"] + [header_of(k) for k in self.keys] \
            + ["fit s"]

    def cells(self, row: Row) -> list[str]:
        out = list(row.label)
        for k in self.keys:
            text = _fmt(row.values.get(k)) + row.marks.get(k, "")
            ci = row.intervals.get(k)
            if ci:
                text += f" [{_fmt(ci[0])}, {_fmt(ci[1])}]"
            out.append(text)
        return out + [row.values.get("fit s", "")]


def mark(table: Table) -> None:
    """Set ``★`` on the best value of each metric column and ``⚑`` on baselines that win."""
    for k in table.keys:
        d = direction(k)
        if not d:
            continue
        vals = [(r, _finite(r.values.get(k))) for r in table.rows]
        vals = [(r, v * d) for r, v in vals if v is not None]
        if not vals:
            continue
        top = max(v for _, v in vals)
        heads = [v for r, v in vals if r.kind != "baseline"]
        best_head = max(heads) if heads else None
        for r, v in vals:
            m = ""
            if np.isclose(v, top, rtol=1e-12, atol=1e-12):
                m += f" {BEST}"
            if r.kind == "baseline" and best_head is not None and v >= best_head - 1e-12 * max(1, abs(best_head)):
                m += f" {BASELINE_WINS}"
            if m:
                r.marks[k] = m


def task_table(task: str, runs: list[dict], unit: str) -> Table:
    keys = metric_keys(task, runs)
    rows, baselines = [], {}
    for r in sorted(runs, key=lambda r: (r["feature_set"], r["head"])):
        test, n = r["metrics"].get("test", {}), r.get("n", {})
        rows.append(Row("run", [r["head"], r["feature_set"], str(r["seed"]),
                                f"{n.get('train', '?')}/{n.get('val', '?')}/{n.get('test', '?')}"],
                        {k: test.get(k) for k in keys} | {"fit s": _fmt(r.get("fit_s"))},
                        (r.get("bootstrap") or {}).get("intervals", {})))
        if task == "v2v_from_emotions" and "joy_only" in r.get("info", {}):
            joy = r["info"]["joy_only"].get("test", {})
            rows.append(Row("ablation", [f"{r['head']} (joy only)", r["feature_set"], str(r["seed"]), ""],
                            {k: joy.get(k) for k in keys}))
        # baselines are scored on the run's own test units: runs whose feature sets cover
        # different videos get their own baseline rows
        baselines.setdefault(json.dumps(r.get("baselines", {}), sort_keys=True), []).append(r)
    for group in baselines.values():
        features = "" if len(baselines) == 1 else ", ".join(sorted({r["feature_set"] for r in group}))
        n = group[0].get("n", {}).get("test", "?")
        for name, m in group[0].get("baselines", {}).items():
            rows.append(Row("baseline", [f"baseline: {name}", features, "", f"-/-/{n}"], {k: m.get(k) for k in keys}))
    table = Table(task, keys, rows, unit)
    mark(table)
    return table


def md_table(table: Table) -> str:
    lines = ["| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(table.cells(r)) + " |" for r in table.rows]
    return "\n".join(lines)


def html_table(table: Table) -> str:
    h = "".join(f"<th>{html.escape(x)}</th>" for x in table.header)
    body = []
    for r in table.rows:
        tds = [f"<td>{html.escape(x)}</td>" for x in r.label]
        for k in table.keys:
            m = r.marks.get(k, "")
            cls = " ".join(c for c, s in (("best", BEST), ("baseline-wins", BASELINE_WINS)) if s in m)
            title = "; ".join(t for t, s in (("best in column", BEST),
                                             ("a baseline at least as good as every trained head", BASELINE_WINS))
                              if s in m)
            text = html.escape(_fmt(r.values.get(k)) + m)
            ci = r.intervals.get(k)
            if ci:
                text += f"<br><span class='ci'>[{_fmt(ci[0])}, {_fmt(ci[1])}]</span>"
            attrs = (f" class='{cls}'" if cls else "") + (f" title='{title}'" if title else "")
            tds.append(f"<td{attrs}>{text}</td>")
        tds.append(f"<td>{html.escape(str(r.values.get('fit s', '')))}</td>")
        body.append(f"<tr class='{r.kind}'>" + "".join(tds) + "</tr>")
    return f"<table><thead><tr>{h}</tr></thead><tbody>{''.join(body)}</tbody></table>"
