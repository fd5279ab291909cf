"""The worker's reference profiles, read from `worker.reference_dir` and re-scanned while it runs.

A new model version (say, one `driftline retrain` just registered, whose profile it wrote into
the directory) is picked up by the next scan, without a restart. A profile that changes on
disk for a version the worker already monitors is *not* swapped in: the open windows of that
version were sketched on the old profile's bins, and mixing the two would make their merge and
evaluation wrong; the worker logs it once and keeps the loaded one until it restarts.
"""

from __future__ import annotations

import logging
from pathlib import Path

from driftline.detectors.profile import ReferenceProfile

log = logging.getLogger(__name__)

__all__ = ["ProfileDirectory"]

ProfileKey = tuple[str, str]


class ProfileDirectory:
    """Every `*.json` profile in one directory, by (model, model_version).

    >>> import tempfile
    >>> directory = ProfileDirectory(tempfile.mkdtemp(), rescan_seconds=0)
    >>> directory.load(), directory.new_profiles(now=1.0)
    ({}, {})
    """

    def __init__(self, path: str | Path, rescan_seconds: float) -> None:
        self.path = Path(path)
        self.rescan_seconds = rescan_seconds
        self._seen: dict[Path, float] = {}  # file -> mtime when last looked at
        self._keys: set[ProfileKey] = set()
        self._scanned_at = -float("inf")

    def load(self) -> dict[ProfileKey, ReferenceProfile]:
        """The profiles now in the directory (at start). A file that does not load is logged
        and skipped: one bad profile must not keep every other model unmonitored."""
        if not self.path.is_dir():
            log.warning(
                "reference directory %s does not exist: no model will be windowed", self.path
            )
            return {}
        profiles = self._read(sorted(self.path.glob("*.json")))
        names = ", ".join(f"{m}@{v}" for m, v in sorted(profiles)) or "none"
        log.info("loaded %d reference profiles from %s: %s", len(profiles), self.path, names)
        return profiles

    def new_profiles(self, now: float, force: bool = False) -> dict[ProfileKey, ReferenceProfile]:
        """Profiles of model versions that appeared since the last look, at most once every
        `rescan_seconds` (0: never re-scan) unless `force`."""
        if not force and (self.rescan_seconds <= 0 or now - self._scanned_at < self.rescan_seconds):
            return {}
        self._scanned_at = now
        if not self.path.is_dir():
            return {}
        changed = [f for f in sorted(self.path.glob("*.json")) if self._seen.get(f) != _mtime(f)]
        profiles = self._read(changed)
        for model, version in profiles:
            log.info("picked up the reference profile of %s@%s (no restart)", model, version)
        return profiles

    def _read(self, files: list[Path]) -> dict[ProfileKey, ReferenceProfile]:
        profiles: dict[ProfileKey, ReferenceProfile] = {}
        for file in files:
            mtime = _mtime(file)
            known = file in self._seen
            self._seen[file] = mtime
            try:
                profile = ReferenceProfile.load(file)
            except Exception as exc:  # a half-written or foreign file: say so, keep going
                log.warning("reference profile %s not loaded: %s", file, exc)
                continue
            key = (profile.model, profile.model_version)
            if key in self._keys:
                if known:
                    log.warning(
                        "reference profile %s of %s@%s changed on disk: the loaded one stays "
                        "until the worker restarts (open windows were sketched on it)",
                        file,
                        *key,
                    )
                continue
            self._keys.add(key)
            profiles[key] = profile
        return profiles


def _mtime(file: Path) -> float:
    try:
        return file.stat().st_mtime
    except OSError:
        return -1.0
