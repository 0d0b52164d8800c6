"""The model + data contract: any saved classifier opens, and a bad pair names both sides."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.data import datasets
from workbench.models import contract, loading


def _dataset(shape=(8, 8, 1), classes=3, n=24, dtype=np.uint8) -> datasets.ImageDataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, *shape)).astype(dtype)
    y = np.arange(n) % classes
    names = tuple(str(i) for i in range(classes))
    return datasets.ImageDataset(x, y, x[:12], y[:12], source="test.npz (npz)", classes=names)


def _keras3_model(path, *, shape=(8, 8, 1), outputs=3, activation="softmax"):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(outputs, activation=activation),
        ]
    )
    model.save(path)
    return path


def _tf_keras_model(path, *, shape=(8, 8, 1), outputs=3):
    import tf_keras

    model = tf_keras.Sequential(
        [
            tf_keras.Input(shape),
            tf_keras.layers.Flatten(),
            tf_keras.layers.Dense(outputs, activation="softmax"),
        ]
    )
    model.save(path)
    return path


def test_keras3_file_opens_and_is_bridged(tmp_path):
    c = contract.open_pair(_keras3_model(tmp_path / "k3.keras"), _dataset())
    assert c.saved_by.startswith("Keras 3")
    assert c.keras_model is not None and "bridged from Keras 3" in c.keras_note
    assert c.input_shape == (8, 8, 1) and c.num_classes == 3
    assert len(c.sha256) == 64


def test_tf_keras_file_and_saved_model_folder_open(tmp_path):
    c = loading.load_classifier(_tf_keras_model(tmp_path / "tk.keras"))
    assert c.saved_by.startswith("tf-keras") and c.keras_model is not None
    import keras

    k3 = keras.models.load_model(_keras3_model(tmp_path / "k3.keras"))
    k3.export(str(tmp_path / "exported"), verbose=False)
    sm = loading.load_classifier(tmp_path / "exported")
    assert sm.keras_model is None and "plain SavedModel" in sm.keras_note
    x = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(sm.predict(x), np.asarray(k3.predict(x, verbose=0)), atol=1e-5)


def test_shape_mismatch_names_both_sides(tmp_path):
    model = _keras3_model(tmp_path / "k3.keras")
    with pytest.raises(loading.ContractError) as err:
        contract.open_pair(model, _dataset(shape=(32, 32, 3)))
    text = str(err.value)
    assert "(8, 8, 1)" in text and "(32, 32, 3)" in text and "k3.keras" in text


def test_class_count_mismatch_names_both_sides(tmp_path):
    model = _keras3_model(tmp_path / "k3.keras", outputs=10)
    with pytest.raises(loading.ContractError, match="10 outputs.*12 classes"):
        contract.open_pair(model, _dataset(classes=12))


def test_logits_are_caught_and_can_be_declared(tmp_path):
    model = _keras3_model(tmp_path / "logits.keras", activation=None)
    with pytest.raises(loading.ContractError, match="--logits"):
        contract.open_pair(model, _dataset())
    c = contract.open_pair(model, _dataset(), logits=True)
    probs = c.predict(_dataset().x_test.astype(np.float32))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "content, fragment",
    [(b"PK\x03\x04 truncated", "not a readable .keras"), (b"", "not a readable .keras")],
)
def test_corrupt_model_file_is_a_clear_error(tmp_path, content, fragment):
    path = tmp_path / "broken.keras"
    path.write_bytes(content)
    with pytest.raises(loading.ContractError, match=fragment):
        loading.load_classifier(path)


def test_missing_or_unknown_model_files(tmp_path):
    with pytest.raises(loading.ContractError, match="No model at"):
        loading.load_classifier(tmp_path / "nope.keras")
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(loading.ContractError, match="don't know how to open"):
        loading.load_classifier(tmp_path / "model.onnx")
    (tmp_path / "folder").mkdir()
    with pytest.raises(loading.ContractError, match="saved_model.pb"):
        loading.load_classifier(tmp_path / "folder")


def test_unbridgeable_keras3_model_keeps_working_without_tf_keras(tmp_path):
    import keras

    # RMSNormalization has weights and no tf-keras twin: the bridge refuses it (layers it can
    # rebuild, such as AdaptiveAveragePooling2D, are bridged: tests/unit/test_bridge*.py)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.RMSNormalization()(keras.layers.Conv2D(4, 3)(inputs))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x))
    keras.Model(inputs, outputs).save(tmp_path / "rms.keras")
    c = contract.open_pair(tmp_path / "rms.keras", _dataset())
    assert c.keras_model is None and "RMSNormalization" in c.keras_note
    assert c.predict(_dataset().x_test.astype(np.float32)).shape == (12, 3)


def test_class_names_must_match_the_outputs(tmp_path):
    dataset = _dataset()
    named = datasets.ImageDataset(
        dataset.x_train,
        dataset.y_train,
        dataset.x_test,
        dataset.y_test,
        source="folder (class folders)",
        classes=("cat", "dog", "cow"),
    )
    model = _keras3_model(tmp_path / "k3.keras", outputs=4)
    with pytest.raises(loading.ContractError, match="names 3 classes.*4 outputs"):
        contract.open_pair(model, named)
    contract.open_pair(model, dataset)  # numbered labels 0..2 fit 4 outputs


def test_input_scale_must_be_positive(tmp_path):
    with pytest.raises(loading.ContractError, match="input_scale"):
        contract.open_pair(_keras3_model(tmp_path / "k3.keras"), _dataset(), input_scale=-1.0)


def test_the_data_shape_is_checked_from_headers_before_the_data_is_loaded(tmp_path):
    from PIL import Image

    model = _tf_keras_model(tmp_path / "tk.h5")
    rgb = np.zeros((6, 32, 32, 3), np.uint8)
    np.savez(tmp_path / "rgb.npz", x_train=rgb, y_train=np.zeros(6), x_test=rgb, y_test=np.zeros(6))
    with pytest.raises(loading.ContractError, match=r"\(8, 8, 1\).*rgb\.npz.*\(32, 32, 3\)"):
        contract.open_for_data(model, tmp_path / "rgb.npz")
    for cls in ("a", "b", "c"):  # one class per output
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.new("L", (8, 8)).save(tmp_path / "imgs" / cls / "0.png")
        Image.new("L", (8, 8)).save(tmp_path / "imgs" / cls / "1.png")
    assert datasets.peek_image_shape(tmp_path / "imgs") == (8, 8, 1)
    classifier = contract.open_for_data(model, tmp_path / "imgs")  # fits: loaded, not bridged
    data = datasets.load_image_dataset(tmp_path / "imgs")
    assert contract.open_pair(classifier, data) is classifier
