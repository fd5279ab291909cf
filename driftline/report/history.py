"""`driftline features history`: one feature's drift scores over time, as text (pure)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

__all__ = ["format_history", "sparkline"]

_BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None], high: float | None = None) -> str:
    """Unicode blocks scaled to ``high`` (default: the largest value); a gap for missing values.

    >>> sparkline([0.0, 0.5, 1.0, None, 0.25])
    '▁▅█ ▃'
    """
    present = [v for v in values if v is not None]
    top = high if high is not None else max(present, default=0.0)
    if top <= 0:
        return "".join(" " if v is None else _BLOCKS[0] for v in values)
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        else:
            level = min(len(_BLOCKS) - 1, max(0, round(v / top * (len(_BLOCKS) - 1))))
            out.append(_BLOCKS[level])
    return "".join(out)


def _score(row: dict[str, Any]) -> float | None:
    value = row.get("effect") if row.get("effect") is not None else row.get("statistic")
    return None if value is None else float(value)


def format_history(rows: Sequence[dict[str, Any]], table: bool = True) -> str:
    """A table (one line per window) or one sparkline per model version.

    >>> from datetime import datetime, UTC
    >>> rows = [{"window_start": datetime(2026, 1, 1, 0, m, tzinfo=UTC), "model_version": "1",
    ...          "test": "ks", "statistic": s, "p_value": p, "adjusted_p_value": p,
    ...          "effect_measure": "wasserstein", "effect": e, "drifted": d,
    ...          "missing_rate": 0.0, "n": 100}
    ...         for m, s, p, e, d in [(0, 0.02, 0.9, 0.01, False), (5, 0.3, 2.61e-132, 0.4, True)]]
    >>> rows[1]["test"] = "ks_binned"
    >>> print(format_history(rows, table=False))
    v1  ▁█  0.01 .. 0.4 (max 0.4), drifted in 1 of 2 windows, 2026-01-01 00:00 .. 00:05 UTC
    >>> print(format_history(rows))
    window start (UTC)  version  test       statistic  p (adj.)   measure      score  verdict
    -----------------------------------------------------------------------------------------
    2026-01-01 00:00    1        ks         0.02       0.9        wasserstein  0.01   ok
    2026-01-01 00:05    1        ks_binned  0.3        2.61e-132  wasserstein  0.4    DRIFTED
    """
    if not table:
        lines = []
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            grouped[str(row["model_version"])].append(row)
        every = [s for s in map(_score, rows) if s is not None]
        high = max(every, default=None)  # one scale for every version
        for version, items in sorted(grouped.items()):
            scores = [_score(r) for r in items]
            present = [s for s in scores if s is not None]
            drifted = sum(1 for r in items if r["drifted"])
            lines.append(
                f"v{version}  {sparkline(scores, high)}  {present[0]:.3g} .. {present[-1]:.3g} "
                f"(max {max(present):.3g}), drifted in {drifted} of {len(items)} windows, "
                f"{items[0]['window_start']:%Y-%m-%d %H:%M} .. "
                f"{items[-1]['window_start']:%H:%M} UTC"
                if present
                else f"v{version}  no scores"
            )
        return "\n".join(lines)
    titles = ["window start (UTC)", "version", "test", "statistic", "p (adj.)", "measure"]
    titles += ["score", "verdict"]
    cells = [
        (
            f"{row['window_start']:%Y-%m-%d %H:%M}",
            str(row["model_version"]),
            str(row.get("test") or "-"),
            _g(row.get("statistic")),
            _g(row.get("adjusted_p_value", row.get("p_value"))),
            str(row.get("effect_measure") or "-"),
            _g(row.get("effect")),
            "DRIFTED" if row["drifted"] else "ok",
        )
        for row in rows
    ]
    # each column as wide as its widest cell: test names and p-values vary in length
    widths = [max(len(c) for c in column) for column in zip(titles, *cells, strict=True)]
    header = "  ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True)).rstrip()
    lines = [header, "-" * len(header)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _g(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3g}"
