"""docs/CONFIGURATION.md is generated from the config schema and stays current."""

from __future__ import annotations

from pathlib import Path

from driftline.configdoc import describe_keys, render_reference

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_current() -> None:
    committed = (ROOT / "docs" / "CONFIGURATION.md").read_text(encoding="utf-8")
    assert committed == render_reference(), (
        "run `driftline config reference > docs/CONFIGURATION.md` and commit"
    )


def test_every_key_is_described() -> None:
    undocumented = [row["key"] for row in describe_keys() if not row["description"]]
    assert undocumented == [], "add a comment in config/driftline.yaml or an EXTRA entry"


def test_comments_of_the_yaml_file_are_read() -> None:
    rows = {r["key"]: r for r in describe_keys("topics:\n  dlq: x.dlq   # bad records\n")}
    assert rows["topics.dlq"]["description"] == "bad records"
    assert rows["topics.dlq"]["env"] == "DRIFTLINE_TOPICS_DLQ"
    assert (
        rows["postgres.url"]["default"] == "`postgresql://driftline:***@127.0.0.1:5432/driftline`"
    )
