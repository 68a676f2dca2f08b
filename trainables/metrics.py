"""What a TrainingRun's evaluation reports: classification and regression metrics (scikit-learn's),
and what a diverged epoch reports instead. (Re-exported by trainables.base.)"""

from __future__ import annotations

import math

import numpy as np

from core.task import TaskSpec


def diverged_metrics(task: TaskSpec) -> dict[str, float]:
    """What an epoch whose loss turned NaN or inf reports: the task's declared values (NaN for a
    metric it declares none of)."""
    return {name: float(task.diverged_values.get(name, math.nan)) for name in task.metrics}


def regression_metrics(y_true: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """RMSE and MAE (scikit-learn's), in the target's units."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    y_true, prediction = np.asarray(y_true, dtype=np.float64), np.asarray(prediction, dtype=np.float64)
    if not np.all(np.isfinite(prediction)):
        return {"rmse": math.nan, "mae": math.nan}
    return {"rmse": float(np.sqrt(mean_squared_error(y_true, prediction))),
            "mae": float(mean_absolute_error(y_true, prediction))}


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy, F1 and AUC-ROC from class probabilities.

    ``proba`` is (n,) positive-class probabilities for two classes, or (n, C) for C classes
    (macro F1 and one-vs-rest macro AUC). AUC is NaN where the split holds one class only.
    """
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    binary = proba.ndim == 1
    y_pred = (proba >= 0.5).astype(int) if binary else proba.argmax(axis=1)
    metrics = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1": float(f1_score(y_true, y_pred, average="binary" if binary else "macro", zero_division=0)),
    }
    if not np.all(np.isfinite(proba)):
        metrics["auc"] = float("nan")
    elif len(np.unique(y_true)) < 2:
        metrics["auc"] = float("nan")
    elif binary:
        metrics["auc"] = float(roc_auc_score(y_true, proba))
    else:
        proba = proba / proba.sum(axis=1, keepdims=True)
        labels = np.arange(proba.shape[1])
        metrics["auc"] = float(roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels))
    return metrics
