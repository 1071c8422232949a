"""Linear probe and few-shot classification on frozen image embeddings: multinomial logistic
regression trained full-batch with optax (Adam, L2 penalty), jitted as one lax.scan.

The benchmark is split in two halves by patient (a hash of patient_id, or of the image id when
there is none), so no patient is on both sides: the probe trains on one half and is scored on
the other. Few-shot draws k training images per class from the training half (k = 1, 2, 4, 8,
16; classes with fewer images give all they have) for each of several seeds and reports the
mean over seeds.
"""
from __future__ import annotations

import functools
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dermjax.eval import metrics

FEW_SHOT_KS = (1, 2, 4, 8, 16)


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit(x, y, w, num_classes: int, steps: int, lr: float, l2: float):
    """Weights [D, C] and bias [C] minimizing the mean weighted cross-entropy + l2 |W|^2."""
    params = {"w": jnp.zeros((x.shape[1], num_classes), jnp.float32), "b": jnp.zeros((num_classes,), jnp.float32)}
    tx = optax.adam(lr)

    def loss(p):
        logits = x @ p["w"] + p["b"]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0) + l2 * jnp.sum(p["w"] ** 2)

    def step(carry, _):
        p, s = carry
        g = jax.grad(loss)(p)
        u, s = tx.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
    return params


def fit_predict(x_train, y_train, x_test, num_classes: int, steps: int = 300, lr: float = 0.05,
                l2: float = 1e-4) -> np.ndarray:
    """Class scores [N_test, C] of a logistic regression fitted on (x_train, y_train)."""
    # Scale so that unit-norm embeddings give logits of a useful size at this learning rate.
    scale = np.sqrt(x_train.shape[1])
    xt = jnp.asarray(x_train * scale, jnp.float32)
    p = _fit(xt, jnp.asarray(y_train, jnp.int32), jnp.ones(len(y_train), jnp.float32),
             num_classes=num_classes, steps=steps, lr=lr, l2=l2)
    return np.asarray(jnp.asarray(x_test * scale, jnp.float32) @ p["w"] + p["b"])


def patient_halves(image_ids, patient_ids=None) -> np.ndarray:
    """True for the training half, by a hash of each example's patient (or image) id."""
    keys = [(p or f"image:{i}") if patient_ids is not None else f"image:{i}"
            for i, p in zip(image_ids, patient_ids if patient_ids is not None else [None] * len(image_ids))]
    return np.array([hashlib.sha256(f"probe:{k}".encode()).digest()[0] < 128 for k in keys])


def _scores(y, s, c):
    m = metrics.classification_metrics(s, y, c)
    return {k: m[k] for k in ("accuracy", "balanced_accuracy", "weighted_f1", "macro_f1", "macro_auroc")}


def evaluate(embeddings: np.ndarray, labels: np.ndarray, num_classes: int, image_ids, patient_ids=None,
             ks=FEW_SHOT_KS, seeds=(0, 1, 2)) -> dict:
    """{"linear_probe": metrics, "few_shot": {k: metrics}, "n_train", "n_test"}; rows with label -1
    are left out. Returns {"skipped": reason} when a half has fewer than two classes."""
    keep = labels >= 0
    x, y = embeddings[keep], labels[keep]
    ids = [i for i, k in zip(image_ids, keep) if k]
    pids = None if patient_ids is None else [p for p, k in zip(patient_ids, keep) if k]
    train = patient_halves(ids, pids)
    if len(set(y[train])) < 2 or len(set(y[~train])) < 2:
        return {"skipped": "fewer than two classes in a patient half"}
    out = {"n_train": int(train.sum()), "n_test": int((~train).sum()), "split": "patient halves"}
    out["linear_probe"] = _scores(y[~train], fit_predict(x[train], y[train], x[~train], num_classes), num_classes)
    out["few_shot"] = {}
    train_idx = np.flatnonzero(train)
    for k in ks:
        runs = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            pick = np.concatenate([rng.permutation(train_idx[y[train_idx] == c])[:k] for c in range(num_classes)])
            if len(set(y[pick])) < 2:
                continue
            runs.append(_scores(y[~train], fit_predict(x[pick], y[pick], x[~train], num_classes), num_classes))
        if runs:
            out["few_shot"][str(k)] = {m: float(np.mean([r[m] for r in runs])) for m in runs[0]}
            out["few_shot"][str(k)]["seeds"] = len(runs)
    return out
