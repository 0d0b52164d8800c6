"""The edge tier's first model: k-nearest neighbours (scikit-learn), its cross-validated k,
its footprint, and safe model files (skops, with a list of trusted types).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import workbench  # noqa: F401 - sets TF_USE_LEGACY_KERAS before any TensorFlow import

# ------------------------------------------------------------------ iris KNN (edge)


def knn_cv_scores(
    x_train: np.ndarray, y_train: np.ndarray, *, ks: list[int], folds: int = 5, seed: int = 0
) -> dict[int, float]:
    """Mean stratified k-fold cross-validation accuracy of a scaled KNN for each k."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return {k: float(cross_val_score(build_knn(k), x_train, y_train, cv=cv).mean()) for k in ks}


def best_k(scores: dict[int, float]) -> int:
    """The k with the highest CV accuracy; ties go to the smallest k (the simplest model)."""
    top = max(scores.values())
    return min(k for k, s in scores.items() if np.isclose(s, top))


def build_knn(k: int):
    """A standardising k-nearest-neighbours classifier (features on one scale)."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=k))


def knn_footprint(model) -> dict[str, int]:
    """Bytes a fitted KNN pipeline needs on the device: it stores its whole training set."""
    from skops.io import dumps

    knn = model[-1]
    stored = int(knn._fit_X.nbytes + np.asarray(knn._y).nbytes)
    return {"training_set_bytes": stored, "serialized_bytes": len(dumps(model))}


# The only types in a saved KNN pipeline (StandardScaler + KNeighborsClassifier with the
# default Euclidean metric) that skops does not trust by default: the fitted KD-tree and
# its distance metric. Exactly these are trusted when loading; nothing else.
KNN_TRUSTED_TYPES = (
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.neighbors._kd_tree.KDTree",
)


class UntrustedModelError(ValueError):
    """A skops file holds types that are not trusted; the message lists them."""


def save_skops(model, path: Path) -> Path:
    """Save a scikit-learn model with skops (a format that cannot run code when loaded).

    Written atomically: a reader sees the previous file or the new one, never half.
    """
    from skops.io import dumps

    from workbench.core import atomic

    return atomic.write_bytes(path, dumps(model))


def load_skops(path: Path, *, trusted: list[str] | tuple[str, ...] = KNN_TRUSTED_TYPES):
    """Load a skops file, trusting skops' defaults plus exactly the ``trusted`` types.

    By default those are the two the project's KNN model needs (:data:`KNN_TRUSTED_TYPES`).
    Anything else skops flags (a function reference such as a ``FunctionTransformer``'s
    ``func``, an unknown class) is refused before anything is built.

    Raises:
        FileNotFoundError: no file at ``path``.
        UntrustedModelError: the file holds types that are not trusted, naming them and
            listing everything skops reported.
    """
    from skops.io import get_untrusted_types, loads

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No model at {path}; run notebook 01 to train and save it.")
    raw = path.read_bytes()  # one read: what is checked is what is loaded
    reported = get_untrusted_types(data=raw)
    refused = [t for t in reported if t not in trusted]
    if refused:
        raise UntrustedModelError(
            f"{path} contains types that are not trusted: {refused} (skops reports as "
            f"untrusted: {reported}; trusted here: {list(trusted)}). Do not load it unless you "
            "know where it came from; if you do and have inspected those types, pass them in "
            "`trusted=`."
        )
    return loads(raw, trusted=list(trusted))
