"""The report's performance section (pure: ReportData in, figure and table out)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from driftline.report.build import performance, summary
from driftline.report.queries import ReportData

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _row(i: int, accuracy: float, final: bool, coverage: float) -> dict[str, object]:
    return {
        "model_version": "1", "window_start": T0 + timedelta(minutes=5 * i),
        "window_end": T0 + timedelta(minutes=5 * i + 5), "labelled": int(1000 * coverage),
        "label_coverage": coverage, "accuracy": accuracy, "precision": None, "recall": None,
        "f1": None, "roc_auc": None, "baseline_accuracy": 0.95, "accuracy_drop": None,
        "final": final,
    }  # fmt: skip


def test_provisional_accuracy_is_never_drawn_or_averaged_as_realised() -> None:
    data = ReportData("fraud", None, T0, T0 + timedelta(hours=1))
    data.performance = [_row(0, 0.9, True, 1.0), _row(1, 0.9, True, 0.98), _row(2, 0.3, False, 0.1)]
    section = performance(data)
    assert section is not None and section.figure is not None
    traces = {t["name"]: t for t in section.figure.traces}
    assert traces["realised v1"]["y"] == [0.9, 0.9]
    provisional = traces["provisional v1 (labels still arriving)"]
    assert provisional["y"] == [0.3] and provisional["text"] == ["label coverage 10%"]
    assert provisional["mode"] == "markers"
    assert "provisional accuracy" in section.table_html and "10%" in section.table_html
    # the summary's realised accuracy is the mean of the final windows only
    assert "0.900" in summary(data).table_html and "0.700" not in summary(data).table_html


def test_only_final_rows_give_no_provisional_trace_or_table() -> None:
    data = ReportData("fraud", None, T0, T0 + timedelta(hours=1))
    data.performance = [_row(0, 0.9, True, 1.0)]
    section = performance(data)
    assert section is not None and section.figure is not None
    assert [t["name"] for t in section.figure.traces] == ["realised v1", "baseline v1"]
    assert section.table_html == ""
