"""`driftline report` from the real PostgreSQL, opened in a real headless Chromium.

The store gets two hours of a model's life (tests/service/report_data.py) in a schema of its
own; the CLI writes the report; Chromium opens the file with every network request sent to a
local listener that counts them, and a probe script (added to a copy of the page) reports what
each plot drew. Chromium comes from Debian (`deploy/local/chromium.sh` installs it).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from driftline.cli import main
from driftline.sinks.store import PostgresStore
from tests.conftest import IN_CI, ROOT
from tests.service.report_data import FEATURES, populate

pytestmark = pytest.mark.service

PROBE = """
<script>
window.addEventListener("load", function () {
  setTimeout(function () {
    var plots = Array.prototype.map.call(document.querySelectorAll("div.plot"), function (gd) {
      var svg = gd.querySelector("svg.main-svg");
      var box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
      return {
        id: gd.id,
        expected: Number(gd.dataset.traces),
        traces: (gd._fullData || []).length,
        drawn: gd.querySelectorAll("g.trace, g.hm image").length,
        points: gd.querySelectorAll("path.point, path.js-line").length,
        heatmaps: gd.querySelectorAll("g.hm image").length,
        width: box.width,
        height: box.height,
      };
    });
    var out = document.createElement("pre");
    out.id = "probe";
    out.textContent = JSON.stringify({
      plots: plots,
      resources: performance.getEntriesByType("resource").map(function (e) { return e.name; }),
      tables: document.querySelectorAll("table").length,
    });
    document.body.appendChild(out);
  }, 500);
});
</script>
</body>"""


# Chromium's own background traffic (updates, time, sign-in), not the page's: the page's
# requests are also checked from inside (performance.getEntriesByType("resource")).
_BROWSER_OWN = re.compile(
    r"^\S+ (https?://)?(clients\d*|accounts|www)\.google\.com[:/]"
    r"|^\S+ (https?://)?(update|optimizationguide-pa|safebrowsing|content-autofill)"
    r"\.googleapis\.com[:/]|^\S+ (https?://)?[\w.-]*\.gvt1\.com[:/]"
)


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        message = "chromium is not installed: run deploy/local/chromium.sh"
        if IN_CI:
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)
    return binary


class _Listener:
    """A TCP listener standing in for every proxy: any request the page makes lands here."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.requests.append(conn.recv(4096).split(b"\r\n", 1)[0])
                except OSError:
                    self.requests.append(b"?")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def store(postgres_url: str) -> Iterator[tuple[str, str]]:
    schema = f"test_report_{uuid.uuid4().hex[:8]}"
    with PostgresStore(postgres_url, schema=schema) as s:
        s.upgrade()
        populate(s, "fraud")
        try:
            yield postgres_url, schema
        finally:
            s.drop_schema()


def _open_in_chromium(page: Path, tmp_path: Path) -> tuple[dict[str, Any], list[bytes]]:
    listener = _Listener()
    try:
        result = subprocess.run(
            [
                _chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-default-apps", "--disable-extensions",
                "--disable-client-side-phishing-detection", "--disable-domain-reliability",
                "--no-pings", "--disable-breakpad", "--metrics-recording-only",
                "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication",
                f"--proxy-server=http://127.0.0.1:{listener.port}", "--proxy-bypass-list=<-loopback>",
                f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1200,900",
                "--virtual-time-budget=15000", "--dump-dom", page.as_uri(),
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        listener.close()
    match = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert match, f"the probe did not run; chromium said: {result.stderr[-2000:]}"
    probe = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    return probe, listener.requests


def test_report_renders_every_plot_without_network(
    store: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, schema = store
    monkeypatch.setenv("DRIFTLINE_POSTGRES_URL", url)
    with psycopg.connect(url, options=f"-c search_path={schema}", autocommit=True) as conn:
        # The retraining tables as migration 0003 creates them (the store fixture upgraded).
        conn.execute(
            "INSERT INTO ab_tests (test_id, model, champion_version, challenger_version,"
            " traffic_share, status, started_at, decided_at, looks, p_value, reason, evidence)"
            " VALUES ('ab-test-xyz', 'fraud', '1', '2', 0.2, 'promoted', now() - interval '1 hour',"
            " now(), 17, 0.0123, 'challenger more accurate by 0.0310',"
            ' \'{"champion": {"n": 123456789}}\'),'
            " ('ab-other-model', 'churn', '1', '2', 0.2, 'running', now(), NULL, 0, 1.0, NULL, '{}')"
        )
        conn.execute(
            "INSERT INTO retraining_runs (run_id, model, from_version, to_version, status,"
            " requested_at, finished_at, policy, trigger_kind, reason, error, details)"
            " VALUES ('run-xyz', 'fraud', '1', '2', 'failed', now() - interval '2 hours', now(),"
            " 'on-drift', 'drift_event', 'feature amount drifted', 'training-error-xyz',"
            ' \'{"traceback": "secret-stack-xyz"}\')'
        )
        conn.execute(
            "INSERT INTO model_version_history (model, model_version, from_status, to_status,"
            " reason) VALUES ('fraud', '2', 'challenger', 'champion', 'promoted-by-ab-xyz')"
        )
        # A table of a later feature (data quality): shown as stored when present.
        conn.execute(
            "CREATE TABLE data_quality_issues (model text, window_start timestamptz, issue text);"
            " INSERT INTO data_quality_issues VALUES ('fraud', now(), 'null-rate-spike-xyz')"
        )
    out = tmp_path / "report.html"
    assert (
        main(["report", "--model", "fraud", "--since", "3h", "-o", str(out), "--schema", schema])
        == 0
    )
    html = out.read_text(encoding="utf-8")
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", html), "the page loads a file"
    page = tmp_path / "probed.html"
    page.write_text(html.replace("</body>", PROBE, 1), encoding="utf-8")

    probe, requests = _open_in_chromium(page, tmp_path)

    page_requests = [r for r in requests if not _BROWSER_OWN.search(r.decode(errors="replace"))]
    assert page_requests == [], f"the page went to the network: {page_requests}"
    assert probe["resources"] == []
    plots = {p["id"]: p for p in probe["plots"]}
    assert set(plots) == {
        "drift-scores", "heatmap", "data-quality", "performance", "latency", "errors", "alerts",
    }  # fmt: skip
    for plot in plots.values():
        assert plot["traces"] == plot["expected"] > 0, plot
        assert plot["drawn"] >= plot["expected"], plot
        assert plot["width"] > 100 and plot["height"] > 100, plot
    # Two versions: one line per feature and version; v2 ran for the last 6 windows only.
    assert plots["drift-scores"]["traces"] == 2 * len(FEATURES)
    assert plots["heatmap"]["heatmaps"] == 1
    assert (
        plots["data-quality"]["traces"] == 2
    )  # merchant_category (lost values in v1), per version
    # realised (final rows), provisional (the last window: labels still arriving), baseline,
    # estimated x 2 versions
    assert plots["performance"]["traces"] == 8
    perf = _section(html, "Performance: realised vs estimated")
    assert "provisional v1 (labels still arriving)" in perf and "label coverage 40%" in perf
    assert perf.count("<tr><td>") == 2  # the provisional table: one window per version
    assert plots["latency"]["traces"] == 6 and plots["errors"]["traces"] == 2
    assert plots["alerts"]["traces"] == 2  # warning and critical
    assert probe["tables"] >= 1  # the summary (and the retraining runs, empty: none)
    assert "DRIFTED" in html and "amount, merchant_category" in html
    assert "<h2>Data quality issues</h2>" in html and "null-rate-spike-xyz" in html
    # The A/B and retraining sections read 0003's columns; the other model's test is not shown
    # and the bulky JSON (evidence, details with the traceback) stays in the store.
    ab = _section(html, "A/B tests")
    for shown in ("ab-test-xyz", "promoted", "challenger more accurate by 0.0310", "0.012"):
        assert shown in ab, shown
    assert "champion_version" in ab and "ab-other-model" not in ab and "123456789" not in ab
    runs = _section(html, "Retraining runs")
    for shown in ("run-xyz", "failed", "on-drift", "drift_event", "training-error-xyz"):
        assert shown in runs, shown
    assert "secret-stack-xyz" not in html
    assert "promoted-by-ab-xyz" in _section(html, "Model version history")


def _section(html: str, title: str) -> str:
    match = re.search(rf"<h2>{re.escape(title)}</h2>(.*?)(?=<h2>|</body>)", html, re.S)
    assert match, f"no section {title!r}"
    return match.group(1)


def test_report_for_an_unknown_model_says_what_to_check(
    store: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, schema = store
    monkeypatch.setenv("DRIFTLINE_POSTGRES_URL", url)
    out = tmp_path / "report.html"
    code = main(["report", "--model", "fruad", "-o", str(out), "--schema", schema])
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    assert "no windows, performance or drift events for model 'fruad'" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_report_screenshot_is_current_enough() -> None:
    """docs/report.png is the page the test above renders (kept small)."""
    shot = ROOT / "docs" / "report.png"
    assert shot.exists() and shot.stat().st_size < 400_000


def test_features_history_and_wrong_password(
    store: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, schema = store
    monkeypatch.setenv("DRIFTLINE_POSTGRES_URL", url)
    argv = ["features", "history", "--model", "fraud", "--feature", "amount", "--since", "3h"]
    assert main([*argv, "--schema", schema, "--model-version", "1"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 2 + 24 and table[-1].endswith("DRIFTED") and table[2].endswith("ok")
    verdict = table[0].index("verdict")  # columns aligned, however long a test name or p
    assert all(line[verdict:] in ("ok", "DRIFTED") for line in table[2:])
    assert main([*argv, "--schema", schema, "--sparkline"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line[:3] for line in lines] == ["v1 ", "v2 "] and "drifted in 12 of 24" in lines[0]

    assert main([*argv[:4], "--feature", "amout", "--schema", schema]) == 1
    assert "did you mean 'amount'?" in capsys.readouterr().err

    wrong = re.sub(r"://([^:]+):[^@]*@", r"://\1:wrong-password@", url)
    monkeypatch.setenv("DRIFTLINE_POSTGRES_URL", wrong)
    assert main([*argv, "--schema", schema]) == 1
    err = capsys.readouterr().err
    assert "password authentication failed" in err and "wrong-password" not in err
    assert err.count("\n") == 1


def test_pool_timeout_is_unwrapped_to_the_server_reason(postgres_url: str) -> None:
    """A `PostgresStore` (a pool) with a wrong password raises PoolTimeout; the CLI's line
    says what the server said."""
    from psycopg_pool import PoolTimeout

    from driftline.config import load_config
    from driftline.diagnose import explain

    wrong = re.sub(r"://([^:]+):[^@]*@", r"://\1:wrong-password@", postgres_url)
    config = load_config(environ={"DRIFTLINE_POSTGRES_URL": wrong})
    with pytest.raises(PoolTimeout) as caught, PostgresStore(wrong, timeout=1.0) as store:
        store.upgrade()
    line = explain(caught.value, config)
    assert "password authentication failed" in line and "wrong-password" not in line


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ("no_such_schema_xyz", "schema 'no_such_schema_xyz' does not exist"),
        ("public -c statement_timeout=1", "expected a lower-case SQL identifier"),
        ("Mixed", "expected a lower-case SQL identifier"),
    ],
)
def test_a_bad_or_missing_schema_is_one_clear_line(
    schema: str,
    expected: str,
    store: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--schema reaches the connection options: validated like PostgresStore does, and a
    schema that is not there is said, never silently replaced by public."""
    url, _ = store
    monkeypatch.setenv("DRIFTLINE_POSTGRES_URL", url)
    out = tmp_path / "report.html"
    assert main(["report", "--model", "fraud", "-o", str(out), "--schema", schema]) == 1
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err
    argv = ["features", "history", "--model", "fraud", "--feature", "amount"]
    assert main([*argv, "--schema", schema]) == 1
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1
    assert not out.exists()
