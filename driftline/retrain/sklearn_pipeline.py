"""The built-in example pipeline: a scikit-learn logistic regression on the labelled sample.

Needs the ``retrain`` extra (``pip install 'driftline[retrain]'``). Numeric features are
standardised (missing -> 0 after scaling, i.e. the mean), categorical ones one-hot encoded
(``DictVectorizer``); the class is the label. Trained on the sample since the trigger's onset
(``data.since``) minus the newest ``holdout_fraction``, which gives the offline metrics.
Raises :class:`NotEnoughDataError` with fewer than ``MIN_TRAINING_ROWS`` training rows or a single
class: the runner records it and promotes nothing.

Use it from an inference service with :func:`predict` on the object
:func:`driftline.retrain.pipeline.load_model` returns.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

from driftline.retrain.pipeline import TrainingData, TrainingResult

__all__ = ["MIN_TRAINING_ROWS", "NotEnoughDataError", "fit", "predict", "train"]

MIN_TRAINING_ROWS = 200


class NotEnoughDataError(RuntimeError):
    """Too few labelled rows (or one class only) to train on."""


def _features(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in (row.get("features") or {}).items():
        if isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, int | float):
            if math.isfinite(value):
                out[name] = float(value)
        elif value is not None:
            out[name] = str(value)  # DictVectorizer one-hot encodes strings as name=value
    return out


def fit(rows: Sequence[Mapping[str, Any]]) -> Any:
    """A fitted scikit-learn Pipeline on rows with ``features`` and ``label``."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = [r["label"] for r in rows]
    if len(rows) < MIN_TRAINING_ROWS or len(set(map(str, labels))) < 2:
        raise NotEnoughDataError(
            f"{len(rows)} labelled rows with {len(set(map(str, labels)))} class(es): need"
            f" {MIN_TRAINING_ROWS} rows and two classes"
        )
    model = make_pipeline(
        DictVectorizer(sparse=False), StandardScaler(), LogisticRegression(max_iter=1000)
    )
    model.fit([_features(r) for r in rows], labels)
    return model


def predict(model: Any, features: Sequence[Mapping[str, Any]]) -> tuple[list[Any], list[float]]:
    """(predicted classes, score of the positive/last class) for feature dicts."""
    x = [_features({"features": f}) for f in features]
    probabilities = model.predict_proba(x)
    classes = list(model.classes_)
    chosen = [classes[int(i)] for i in probabilities.argmax(axis=1)]
    return [c.item() if hasattr(c, "item") else c for c in chosen], [
        float(p) for p in probabilities[:, -1]
    ]


def train(model: str, reason: str, data: TrainingData) -> TrainingResult:
    """The pipeline entry point (``driftline.retrain.sklearn_pipeline:train``)."""
    train_rows, holdout = data.split()
    fitted = fit(train_rows)
    metrics: dict[str, float] = {"training_rows": float(len(train_rows))}
    if holdout:
        predicted, scores = predict(fitted, [r["features"] for r in holdout])
        truth = [r["label"] for r in holdout]
        metrics["accuracy"] = sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(
            truth
        )
        metrics["holdout_rows"] = float(len(holdout))
        if len(set(map(str, truth))) == 2:
            from sklearn.metrics import roc_auc_score

            positive = list(fitted.classes_)[-1]
            metrics["roc_auc"] = float(roc_auc_score([t == positive for t in truth], scores))
    predicted, scores = predict(fitted, [r["features"] for r in train_rows])
    records = [
        {"features": r["features"], "prediction": p, "score": s}
        for r, p, s in zip(train_rows, predicted, scores, strict=True)
    ]
    return TrainingResult(
        artifact=pickle.dumps(fitted),
        metrics=metrics,
        training_records=records,
        training_labels=[r["label"] for r in train_rows],
        details={"estimator": "DictVectorizer+StandardScaler+LogisticRegression", "reason": reason},
    )
