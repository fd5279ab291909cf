"""`driftline report`: one self-contained HTML file about a model, built from PostgreSQL.

:mod:`driftline.report.queries` reads the store (I/O), :mod:`driftline.report.build` turns the
rows into the page (pure). Needs the optional extra ``report`` (plotly, jinja2).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from driftline.diagnose import CommandError

__all__ = ["plotly_js", "write_report"]


def plotly_js() -> str:
    """plotly.js as shipped inside the plotly package (inlined in the page: no CDN)."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise CommandError(
            "the HTML report needs plotly and jinja2: pip install 'driftline[report]'"
        ) from None
    return str(get_plotlyjs())


def write_report(
    url: str,
    out: Path,
    *,
    model: str,
    since: datetime,
    model_version: str | None = None,
    schema: str | None = None,
    until: datetime | None = None,
) -> Path:
    """Query the store and write the report to ``out``; returns ``out``."""
    from driftline.report.build import render_report
    from driftline.report.queries import connect, load_report_data

    script = plotly_js()
    now = datetime.now(UTC)
    with connect(url, schema) as conn:
        data = load_report_data(conn, model, since, until or now, model_version)
    if not (data.windows or data.performance or data.events):
        raise CommandError(
            f"no windows, performance or drift events for model {model!r}"
            + (f" version {model_version!r}" if model_version else "")
            + f" since {since:%Y-%m-%d %H:%M} UTC: check the name, widen --since, and check "
            "that `driftline sink postgres` is running"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(data, script, now), encoding="utf-8")
    return out
