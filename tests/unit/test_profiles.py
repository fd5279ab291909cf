"""ProfileDirectory: new versions picked up, changed ones kept, broken files skipped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from driftline.streams.profiles import ProfileDirectory
from tests.conftest import build_reference


def test_new_versions_are_picked_up_and_changed_ones_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    build_reference(tmp_path, model_version="1")
    directory = ProfileDirectory(tmp_path, rescan_seconds=5)
    assert set(directory.load()) == {("fraud", "1")}
    assert directory.new_profiles(now=100.0) == {}  # nothing new
    build_reference(tmp_path, model_version="2")
    assert directory.new_profiles(now=101.0) == {}  # too soon after the last look
    assert set(directory.new_profiles(now=101.0, force=True)) == {("fraud", "2")}
    # the file of version 1 changes on disk: not swapped in, said once
    first = tmp_path / "fraud@1.json"
    os.utime(first, (first.stat().st_atime, first.stat().st_mtime + 10))
    assert directory.new_profiles(now=200.0) == {}
    assert "changed on disk" in caplog.text
    # a half-written file is skipped with a warning, the scan goes on
    (tmp_path / "broken.json").write_text("{")
    build_reference(tmp_path, model="credit", model_version="1")
    assert set(directory.new_profiles(now=300.0)) == {("credit", "1")}
    assert "broken.json not loaded" in caplog.text


def test_zero_means_never_rescan(tmp_path: Path) -> None:
    directory = ProfileDirectory(tmp_path, rescan_seconds=0)
    assert directory.load() == {}
    build_reference(tmp_path)
    assert directory.new_profiles(now=1e9) == {}
