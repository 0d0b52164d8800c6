"""skops model files: exactly the types the KNN model needs are trusted, nothing else."""

from __future__ import annotations

import pytest

from workbench.data import datasets
from workbench.models.knn import (
    KNN_TRUSTED_TYPES,
    UntrustedModelError,
    build_knn,
    load_skops,
    save_skops,
)


@pytest.fixture(scope="module")
def knn():
    x, y, _, _ = datasets.load_iris()
    return build_knn(5).fit(x, y), x


def test_the_knn_model_needs_exactly_the_trusted_types(knn, tmp_path):
    from skops.io import get_untrusted_types

    model, x = knn
    path = save_skops(model, tmp_path / "knn.skops")
    assert sorted(get_untrusted_types(file=path)) == sorted(KNN_TRUSTED_TYPES)
    reloaded = load_skops(path)
    assert (reloaded.predict(x) == model.predict(x)).all()
    assert [p.name for p in tmp_path.iterdir()] == ["knn.skops"]  # written atomically


def test_a_function_reference_inside_sklearn_is_refused(knn, tmp_path):
    """skops flags the function a FunctionTransformer would call; nothing under sklearn.* is
    trusted wholesale, so loading such a file fails before anything is built."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.utils._testing import assert_run_python_script_without_output

    model, x = knn
    hostile = make_pipeline(
        FunctionTransformer(func=assert_run_python_script_without_output), model
    )
    path = save_skops(hostile, tmp_path / "hostile.skops")
    with pytest.raises(UntrustedModelError) as err:
        load_skops(path)
    message = str(err.value)
    assert (
        "not trusted: ['sklearn.utils._testing.assert_run_python_script_without_output']" in message
    )
    for reported in KNN_TRUSTED_TYPES:  # the whole list skops reports is shown
        assert reported in message
    assert isinstance(err.value, ValueError)


def test_types_can_be_trusted_explicitly_and_a_missing_file_says_what_to_do(knn, tmp_path):
    model, x = knn
    path = save_skops(model, tmp_path / "knn.skops")
    with pytest.raises(UntrustedModelError, match="KDTree"):
        load_skops(path, trusted=[])
    with pytest.raises(FileNotFoundError, match="notebook 01"):
        load_skops(tmp_path / "none.skops")
