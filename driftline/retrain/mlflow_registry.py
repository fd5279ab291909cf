"""The MLflow Model Registry backend (``retraining.registry: mlflow``; extra ``mlflow``).

driftline's own tables in PostgreSQL stay the source of truth for what it decides (statuses,
runs, A/B tests, the lock); with this backend every version is also registered in MLflow, kept
in sync after each change:

* registered model = the driftline model name; one MLflow run per version (experiment
  ``driftline-<model>``) holding the artifact (``model.bin``) and the offline metrics;
* an MLflow model version whose source is that artifact, tagged ``driftline.version``,
  ``driftline.status``, ``driftline.parent`` and ``driftline.sha256``;
* the aliases ``champion`` and ``challenger`` follow the statuses (removed when the version is
  retired or rolled back).

An MLflow outage never blocks retraining or a promotion: :meth:`MlflowRegistry.sync` logs the
error and returns False, and the next change of the version syncs it again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["MlflowRegistry"]

log = logging.getLogger(__name__)

_ALIASES = ("champion", "challenger")


class MlflowRegistry:
    def __init__(self, tracking_uri: str) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _ensure_model(self, model: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(model)
        except MlflowException:
            self.client.create_registered_model(
                model, description="registered by driftline retraining"
            )

    def find(self, model: str, version: str) -> Any | None:
        """The MLflow model version mirroring ``model@version``, or None."""
        found = self.client.search_model_versions(
            f"name = '{model}' and tag.`driftline.version` = '{version}'"
        )
        return found[0] if found else None

    def _create(self, row: Mapping[str, Any], artifact_file: Path) -> Any:
        model, version = row["model"], row["model_version"]
        experiment = f"driftline-{model}"
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = (
            found.experiment_id if found is not None else self.client.create_experiment(experiment)
        )
        run = self.client.create_run(experiment_id, run_name=f"{model}@{version}")
        run_id = run.info.run_id
        for key, value in (row.get("metrics") or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.client.log_metric(run_id, key, float(value))
        self.client.log_artifact(run_id, str(artifact_file), artifact_path="model")
        self.client.set_terminated(run_id)
        return self.client.create_model_version(
            model,
            source=f"{run.info.artifact_uri}/model",
            run_id=run_id,
            tags={
                "driftline.version": version,
                "driftline.parent": row.get("parent_version") or "",
                "driftline.sha256": row.get("artifact_sha256") or "",
            },
            description=f"driftline {model}@{version}",
        )

    def sync(self, row: Mapping[str, Any], artifact_file: Path | None) -> bool:
        """Make MLflow agree with the registry row of one version (create it with its
        artifact if missing, set its status tag, move the aliases). True on success."""
        try:
            model, version, status = row["model"], row["model_version"], row["status"]
            self._ensure_model(model)
            mirrored = self.find(model, version)
            if mirrored is None:
                if artifact_file is None:
                    log.warning("MLflow: %s@%s has no artifact to register", model, version)
                    return False
                mirrored = self._create(row, artifact_file)
            self.client.set_model_version_tag(model, mirrored.version, "driftline.status", status)
            aliases = self.client.get_registered_model(model).aliases
            for alias in _ALIASES:
                points_here = str(aliases.get(alias)) == str(mirrored.version)
                if status == alias and not points_here:
                    self.client.set_registered_model_alias(model, alias, mirrored.version)
                elif status != alias and points_here:
                    self.client.delete_registered_model_alias(model, alias)
            return True
        except Exception:
            log.exception(
                "MLflow: syncing %s@%s failed", row.get("model"), row.get("model_version")
            )
            return False
