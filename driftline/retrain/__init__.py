"""Retraining, model registry and A/B tests (docs/RETRAINING.md).

- `policy.py` (pure): when a trigger may start a retraining;
- `driftline/detectors/abtest.py` (pure): the A/B test's sequential test and guardrails;
- `sample.py`: the training sample consumer (`driftline sink training-sample`), over
  `sample_table.py` (its tables: sampling, write, retention, the stratified read);
- `pipeline.py`: the pipeline contract, data accessor, artifacts; `sklearn_pipeline.py`: the
  built-in example;
- `registry.py`: versions, runs, evaluations, A/B tests in PostgreSQL, the retraining lock;
- `service.py`: triggers and policy verdicts (`RetrainService`); `training.py`: one pipeline run
  and its candidate; `control.py`: the control topic and routing; `loop.py`: `retrain serve`;
- `evaluator.py`: the A/B evaluator's looks and the consequences of a decision;
- `mlflow_registry.py`: the MLflow Model Registry backend;
- `traffic.py`: a simulated inference service that routes through the router;
- `commands.py`: the CLI commands' logic.
"""
