"""The HTML report: :class:`~driftline.report.queries.ReportData` in, one HTML file out (pure).

One self-contained page: plotly's JavaScript is inlined once, every figure is a ``<div>``
drawn by it, and nothing is fetched when the page opens (no CDN, no fonts, no images).
Each figure's div carries ``data-traces``, the number of traces it should draw, which the
browser test checks.

Sections, each left out when there is nothing to show: summary per model version, drift score
per feature over time, drifted-feature heatmap, data quality (missing and invalid values),
realised vs estimated performance, latency percentiles and error rate, alert timeline,
retraining and A/B history.

Why one module of ~470 lines: one small builder per section, read in the order the page shows
them, sharing the figure and table helpers at the top; the report's queries live apart
(:mod:`driftline.report.queries`).
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from driftline.report.queries import ReportData, Rows

__all__ = ["Figure", "Section", "render_report", "sections"]

SEVERITY_COLOURS = {"warning": "#e6a700", "critical": "#d62728"}


@dataclass(frozen=True)
class Figure:
    """A plotly figure as plain data (``traces`` and ``layout`` dicts)."""

    id: str
    traces: list[dict[str, Any]]
    layout: dict[str, Any]


@dataclass(frozen=True)
class Section:
    title: str
    intro: str = ""
    figure: Figure | None = None
    table_html: str = ""


def _by_version(rows: Rows) -> dict[str, Rows]:
    grouped: dict[str, Rows] = defaultdict(list)
    for row in rows:
        grouped[str(row["model_version"])].append(row)
    return dict(sorted(grouped.items()))


def _mean(values: Iterable[Any]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None:
        return "–"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return format(value, spec)
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "–"
    return str(value)


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], classes: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f'<table class="{classes}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _layout(title: str, y_title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title},
        "xaxis": {"title": {"text": "window start (UTC)"}},
        "yaxis": {"title": {"text": y_title}},
        "height": 380,
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "legend": {"orientation": "h", "y": -0.25},
        **extra,
    }


def _line(x: list[Any], y: list[Any], name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "scatter", "mode": "lines+markers", "x": x, "y": y, "name": name, **extra}


# -- sections ------------------------------------------------------------------------------------


def summary(data: ReportData) -> Section:
    """Status per model version, open alerts, drifted features, realised vs estimated accuracy."""
    windows, performance = _by_version(data.windows), _by_version(data.performance)
    versions = sorted(set(windows) | set(performance) | set(data.open_alerts))
    rows = []
    for version in versions:
        w, p = windows.get(version, []), performance.get(version, [])
        last = w[-1] if w else {}
        drifted_windows = sum(1 for r in w if r["drifted"])
        if not w:
            status = "no windows"
        elif last.get("status") != "evaluated":
            status = str(last.get("status"))
        else:
            status = "DRIFTED" if last.get("drifted") else "ok"
        rows.append(
            (
                version,
                status,
                last.get("window_end"),
                f"{drifted_windows} / {len(w)}",
                data.open_alerts.get(version, 0),
                last.get("drifted_features") or [],
                _mean(r["accuracy"] for r in p if r["final"]),
                _mean(r["estimated_accuracy"] for r in w),
                _mean(r["baseline_accuracy"] for r in p),
                sum(int(r["n_records"] or 0) for r in w),
            )
        )
    headers = (
        "version", "status (last window)", "last window end", "drifted windows", "open alerts",
        "drifted features (last window)", "realised accuracy (final)", "estimated accuracy",
        "baseline accuracy", "predictions",
    )  # fmt: skip
    if not rows:
        return Section("Summary", "No data for this model in the period.")
    return Section("Summary", table_html=_table(headers, rows, "summary"))


def drift_scores(data: ReportData) -> Section | None:
    """The drift score (the verdict test's effect size, else its statistic) per feature."""
    series: dict[str, tuple[list[Any], list[Any]]] = defaultdict(lambda: ([], []))
    versions = {str(r["model_version"]) for r in data.features}
    for row in data.features:
        score = row["effect"] if row["effect"] is not None else row["statistic"]
        name = row["feature"] + (f" (v{row['model_version']})" if len(versions) > 1 else "")
        series[name][0].append(row["window_start"])
        series[name][1].append(score)
    if not series:
        return None
    traces = [_line(x, y, name) for name, (x, y) in sorted(series.items())]
    return Section(
        "Drift score per feature",
        "The verdict test's effect size per window (normalised Wasserstein, PSI or Jensen-"
        "Shannon, see docs/DRIFT_DETECTION.md); higher is further from the reference.",
        Figure("drift-scores", traces, _layout("Drift score per feature", "score")),
    )


def heatmap(data: ReportData) -> Section | None:
    """Features x windows: 1 where the feature drifted in that window (any version)."""
    if not data.features:
        return None
    features = sorted({r["feature"] for r in data.features})
    starts = sorted({r["window_start"] for r in data.features})
    column = {s: i for i, s in enumerate(starts)}
    row_of = {f: i for i, f in enumerate(features)}
    z: list[list[int | None]] = [[None] * len(starts) for _ in features]
    for r in data.features:
        i, j = row_of[r["feature"]], column[r["window_start"]]
        z[i][j] = max(z[i][j] or 0, int(bool(r["drifted"])))
    trace = {
        "type": "heatmap",
        "z": z,
        "x": starts,
        "y": features,
        "zmin": 0,
        "zmax": 1,
        "colorscale": [[0, "#e8f1e4"], [1, "#d62728"]],
        "showscale": False,
        "hovertemplate": "%{y} at %{x}: drifted=%{z}<extra></extra>",
    }
    drifted = sum(1 for r in data.features if r["drifted"])
    return Section(
        "Drifted features",
        f"{drifted} feature-windows drifted out of {len(data.features)} evaluated (red).",
        Figure(
            "heatmap",
            [trace],
            _layout(
                "Drifted features per window",
                "",
                margin={"l": 160, "r": 20, "t": 50, "b": 50},
                height=max(260, 60 + 28 * len(features)),
            ),
        ),
    )


def data_quality(data: ReportData) -> Section | None:
    """Missing and invalid values per feature, for the features that had any."""
    series: dict[str, tuple[list[Any], list[Any]]] = defaultdict(lambda: ([], []))
    affected = {
        r["feature"]
        for r in data.features
        if (r.get("missing_rate") or 0) > 0 or (r.get("invalid") or 0) > 0
    }
    if not data.features:
        return None
    if not affected:
        return Section("Data quality", "No missing or invalid values in any evaluated window.")
    versions = {str(r["model_version"]) for r in data.features}
    for r in data.features:
        if r["feature"] not in affected:
            continue
        n = (r.get("n") or 0) + (r.get("missing") or 0) + (r.get("invalid") or 0)
        bad = (r.get("missing") or 0) + (r.get("invalid") or 0)
        rate = r.get("missing_rate") if not r.get("invalid") else (bad / n if n else None)
        name = r["feature"] + (f" (v{r['model_version']})" if len(versions) > 1 else "")
        series[name][0].append(r["window_start"])
        series[name][1].append(rate)
    traces = [_line(x, y, name) for name, (x, y) in sorted(series.items())]
    return Section(
        "Data quality",
        "Share of missing or invalid (non-numeric, infinite) values per window, for the "
        "features that had any.",
        Figure(
            "data-quality",
            traces,
            _layout("Missing or invalid values", "share", yaxis={"tickformat": ".0%"}),
        ),
    )


def _coverage(row: dict[str, Any]) -> str:
    coverage = row["label_coverage"]
    return "–" if coverage is None else f"{float(coverage):.0%}"


def performance(data: ReportData) -> Section | None:
    """Realised accuracy (labels joined) of final windows; provisional accuracy, apart, of
    windows whose labels are still arriving (with their label coverage); CBPE-estimated
    accuracy (no labels); baseline."""
    traces, provisional_rows = [], []
    for version, rows in _by_version(data.performance).items():
        final = [r for r in rows if r["final"]]
        provisional = [r for r in rows if not r["final"]]
        provisional_rows += provisional
        if final:
            traces.append(
                _line(
                    [r["window_start"] for r in final],
                    [r["accuracy"] for r in final],
                    f"realised v{version}",
                )
            )
        if provisional:
            traces.append(
                _line(
                    [r["window_start"] for r in provisional],
                    [r["accuracy"] for r in provisional],
                    f"provisional v{version} (labels still arriving)",
                    mode="markers",
                    marker={"symbol": "circle-open", "size": 10},
                    text=[f"label coverage {_coverage(r)}" for r in provisional],
                )
            )
        baseline = next((r["baseline_accuracy"] for r in rows if r["baseline_accuracy"]), None)
        if baseline is not None:
            traces.append(
                _line(
                    [rows[0]["window_start"], rows[-1]["window_start"]],
                    [baseline, baseline],
                    f"baseline v{version}",
                    mode="lines",
                    line={"dash": "dash"},
                )
            )
    for version, rows in _by_version(data.windows).items():
        estimated = [r for r in rows if r["estimated_accuracy"] is not None]
        if estimated:
            traces.append(
                _line(
                    [r["window_start"] for r in estimated],
                    [r["estimated_accuracy"] for r in estimated],
                    f"estimated v{version}",
                    line={"dash": "dot"},
                )
            )
    if not traces:
        return None
    table = ""
    if provisional_rows:
        table = _table(
            ("version", "window start", "labelled", "label coverage", "provisional accuracy"),
            (
                (r["model_version"], r["window_start"], r["labelled"], _coverage(r), r["accuracy"])
                for r in provisional_rows
            ),
            "provisional",
        )
    return Section(
        "Performance: realised vs estimated",
        "Realised accuracy of the windows whose labels are all in (final); provisional accuracy "
        "(open circles, and the table below) of windows whose labels are still arriving, "
        "replaced by the final figure once the label horizon passes; estimated accuracy (CBPE, "
        "from the scores, no labels needed) for every window; the reference baseline dashed.",
        Figure("performance", traces, _layout("Accuracy", "accuracy")),
        table,
    )


def latency(data: ReportData) -> list[Section]:
    """Serving latency percentiles and error rate per window."""
    sections = []
    lat_traces, err_traces = [], []
    for version, rows in _by_version(data.windows).items():
        x = [r["window_start"] for r in rows]
        for q in ("p50", "p95", "p99"):
            y = [r[f"latency_{q}_seconds"] for r in rows]
            if any(v is not None for v in y):
                lat_traces.append(
                    _line(x, [None if v is None else v * 1000 for v in y], f"{q} v{version}")
                )
        if any(r["error_rate"] is not None for r in rows):
            err_traces.append(_line(x, [r["error_rate"] for r in rows], f"error rate v{version}"))
    if lat_traces:
        sections.append(
            Section(
                "Latency",
                "Serving latency reported in the prediction records, percentiles per window.",
                Figure("latency", lat_traces, _layout("Latency percentiles", "milliseconds")),
            )
        )
    if err_traces:
        sections.append(
            Section(
                "Error rate",
                "Share of predictions that carried an error, per window.",
                Figure(
                    "errors",
                    err_traces,
                    _layout("Error rate", "share", yaxis={"tickformat": ".1%"}),
                ),
            )
        )
    return sections


def alert_timeline(data: ReportData) -> Section | None:
    """Drift events over time, one row per event type, coloured by severity."""
    if not data.events:
        return None
    by_severity: dict[str, Rows] = defaultdict(list)
    for event in data.events:
        by_severity[str(event["severity"])].append(event)
    traces = []
    for severity, events in sorted(by_severity.items()):
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": severity,
                "x": [e["event_time"] for e in events],
                "y": [e["type"] for e in events],
                "text": [
                    f"v{e['model_version']} {e['feature'] or e['test'] or ''}".strip()
                    for e in events
                ],
                "marker": {"size": 10, "color": SEVERITY_COLOURS.get(severity, "#1f77b4")},
                "hovertemplate": "%{x}<br>%{y}: %{text}<extra>" + severity + "</extra>",
            }
        )
    counts: dict[str, int] = defaultdict(int)
    for event in data.events:
        counts[event["type"]] += 1
    summary = ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))
    return Section(
        "Alert timeline",
        f"{len(data.events)} drift events: {summary}.",
        Figure(
            "alerts",
            traces,
            _layout("Drift events", "", xaxis={"title": {"text": "event time (UTC)"}}),
        ),
    )


def history(data: ReportData) -> list[Section]:
    """Retraining runs and A/B tests, as stored (tables of later features, when present)."""
    return _stored_tables(data.history)


def quality_tables(data: ReportData) -> list[Section]:
    """Data-quality findings stored by the data-quality checks, when their tables exist."""
    return _stored_tables({t: rows for t, rows in data.quality.items() if rows})


_TITLES = {"ab_tests": "A/B tests"}


def _stored_tables(tables: dict[str, Rows]) -> list[Section]:
    sections = []
    for table, rows in tables.items():
        title = _TITLES.get(table) or table.replace("_", " ").capitalize()
        if not rows:
            sections.append(Section(title, "None in the store."))
            continue
        headers = list(rows[0])
        sections.append(
            Section(title, table_html=_table(headers, ([r[h] for h in headers] for r in rows)))
        )
    return sections


def sections(data: ReportData) -> list[Section]:
    """Every section of the report, in page order."""
    found: list[Section | None] = [
        summary(data),
        drift_scores(data),
        heatmap(data),
        data_quality(data),
        *quality_tables(data),
        performance(data),
        *latency(data),
        alert_timeline(data),
        *history(data),
    ]
    return [s for s in found if s is not None]


# -- page ------------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 2rem 3rem;
       color: #1d2430; }
header { border-bottom: 2px solid #1d2430; margin-bottom: 1rem; }
h1 { margin: 1rem 0 0.2rem; } h2 { margin-top: 2rem; }
.meta { color: #5b6472; margin: 0 0 0.8rem; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0; }
th, td { border: 1px solid #d4d8de; padding: 0.3rem 0.6rem; text-align: left; }
th { background: #f1f3f6; }
td:nth-child(2) { font-weight: 600; }
.plot { width: 100%; }
"""


def render_report(data: ReportData, plotly_js: str, generated_at: datetime) -> str:
    """The whole page. ``plotly_js`` is plotly.js itself (inlined, so no network is needed)."""
    import jinja2
    import markupsafe

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.policies["json.dumps_function"] = _dumps
    template = env.from_string(_TEMPLATE)
    return template.render(
        data=data,
        title=f"driftline report: {data.model}"
        + (f" version {data.model_version}" if data.model_version else ""),
        sections=sections(data),
        style=_STYLE,
        plotly_js=markupsafe.Markup(plotly_js.replace("</script", "<\\/script")),
        generated_at=generated_at,
        fmt=_fmt,
        markup=markupsafe.Markup,
    )


def _dumps(value: Any, **kwargs: Any) -> str:
    import orjson

    return orjson.dumps(value, default=str, option=orjson.OPT_NAIVE_UTC).decode()


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>{{ style }}</style>
<script>{{ plotly_js }}</script>
</head>
<body>
<header>
<h1>{{ title }}</h1>
<p class="meta">From {{ fmt(data.since) }} to {{ fmt(data.until) }} UTC
· {{ data.windows | length }} windows · {{ data.features | length }} feature evaluations
· {{ data.events | length }} drift events · generated {{ fmt(generated_at) }} UTC</p>
</header>
{% for section in sections %}
<section>
<h2>{{ section.title }}</h2>
{% if section.intro %}<p>{{ section.intro }}</p>{% endif %}
{% if section.table_html %}{{ markup(section.table_html) }}{% endif %}
{% if section.figure %}
<div class="plot" id="{{ section.figure.id }}" data-traces="{{ section.figure.traces | length }}"></div>
<script>
Plotly.newPlot({{ section.figure.id | tojson }}, {{ section.figure.traces | tojson }},
  {{ section.figure.layout | tojson }}, {"displaylogo": false, "responsive": true});
</script>
{% endif %}
</section>
{% endfor %}
</body>
</html>
"""
