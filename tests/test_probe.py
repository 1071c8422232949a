"""Linear probe / few-shot logistic regression against scikit-learn's."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from dermjax.eval import probe


def _data(rng, n, d=16, c=4):
    centers = rng.normal(size=(c, d))
    y = rng.integers(0, c, size=n)
    x = centers[y] + rng.normal(size=(n, d)) * 0.9
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


def test_logistic_regression_agrees_with_sklearn():
    rng = np.random.default_rng(0)
    x, y = _data(rng, 800)
    xt, yt = x[400:], y[400:]
    ours = probe.fit_predict(x[:400], y[:400], xt, 4, steps=400).argmax(1)
    ref = LogisticRegression(C=10.0, max_iter=2000).fit(x[:400] * 4, y[:400]).predict(xt * 4)
    assert np.mean(ours == ref) > 0.95
    assert np.mean(ours == yt) == pytest.approx(np.mean(ref == yt), abs=0.03)


def test_probe_splits_by_patient_and_reports_every_k():
    rng = np.random.default_rng(1)
    x, y = _data(rng, 300)
    ids = [f"img{i}" for i in range(300)]
    patients = [f"p{i // 3}" for i in range(300)]
    halves = probe.patient_halves(ids, patients)
    for p in set(patients):
        assert len({bool(h) for h, q in zip(halves, patients) if q == p}) == 1  # a patient on one side
    y[::17] = -1  # outside the evaluated classes
    out = probe.evaluate(x, y, 4, ids, patients)
    assert out["n_train"] + out["n_test"] == int((y >= 0).sum())
    assert set(out["few_shot"]) == {"1", "2", "4", "8", "16"}
    assert out["linear_probe"]["accuracy"] > 0.8
    assert out["few_shot"]["16"]["accuracy"] >= out["few_shot"]["1"]["accuracy"] - 0.05
    assert probe.evaluate(x, np.zeros(300, int), 4, ids)["skipped"]
