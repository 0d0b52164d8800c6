"""Helpers for the security tests: model files that run code, certificates, tokens.

Every "evil" model here does something harmless but visible: it writes a marker file (the
test checks it stays absent unless the model is trusted) or reads ``/etc/hostname``.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------- models that run code


def lambda_model(marker: Path, *, keras3: bool = False):
    """A classifier on 8x8x1 images whose Lambda layer writes ``marker`` when it runs."""
    if keras3:
        import keras
    else:
        import tf_keras as keras

    inputs = keras.Input((8, 8, 1))
    # self-contained (the byte code is saved with its defaults): plain Python side effects
    x = keras.layers.Lambda(
        lambda t, path=str(marker): (open(path, "w").write("the model's code ran"), t)[1]
    )(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def save_lambda_model(folder: Path, marker: Path, fmt: str) -> Path:
    """Save :func:`lambda_model` as ``h5``, ``savedmodel`` (tf-keras) or ``keras3``; the
    marker written while saving is removed."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "keras3":
        model, path = lambda_model(marker, keras3=True), folder / "lambda3.keras"
        model.save(path)
    elif fmt == "h5":
        model, path = lambda_model(marker), folder / "lambda.h5"
        model.save(path)
    else:
        model, path = lambda_model(marker), folder / "lambda_savedmodel"
        model.save(path, save_format="tf")
    marker.unlink(missing_ok=True)
    return path


def file_writing_savedmodel(base: Path, marker: Path, *, name: str = "evil", version: int = 1):
    """A plain SavedModel (TF Serving layout) whose ``serving_default`` writes ``marker`` and
    returns ``/etc/hostname`` (if it exists) next to its probabilities."""
    import tensorflow as tf

    class Evil(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32, name="images")])
        def serve(self, images):
            wrote = tf.io.write_file(str(marker), tf.constant("the model's code ran"))
            with tf.control_dependencies([wrote]):
                n = tf.shape(images)[0]
                probabilities = tf.fill([n, 10], 0.1)
            host = tf.fill([n], tf.io.read_file("/etc/hostname"))
            return {"probabilities": probabilities, "host": host}

    module = Evil()
    folder = base / name / str(version)
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    marker.unlink(missing_ok=True)
    return folder


def tiny_images(n: int = 40, seed: int = 0, shape=(8, 8, 1)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n, *shape), dtype=np.uint8),
        "y_train": np.arange(n) % 3,
        "x_test": rng.integers(0, 256, (n // 2, *shape), dtype=np.uint8),
        "y_test": np.arange(n // 2) % 3,
    }


# ---------------------------------------------------------------- certificates and tokens


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, cert, key) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization

    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path.with_suffix(".crt"), path.with_suffix(".key")


def certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, as PEM files:
    ``ca``, ``server_cert``, ``server_key``, ``client_cert``, ``client_key``, and ``other_ca``
    (a CA that signed nothing here)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    later = now + datetime.timedelta(days=2)

    def ca_cert(name: str, key):
        return (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(later)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )

    def leaf(name: str, key, ca, ca_key, *, server: bool):
        from cryptography.x509.oid import ExtendedKeyUsageOID

        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(later)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return builder.sign(ca_key, hashes.SHA256())

    ca_key, other_key = _key(), _key()
    ca = ca_cert("workbench test CA", ca_key)
    out = {}
    out["ca"], _ = _write(folder / "ca", ca, ca_key)
    out["other_ca"], _ = _write(folder / "other_ca", ca_cert("another CA", other_key), other_key)
    server_key, client_key = _key(), _key()
    out["server_cert"], out["server_key"] = _write(
        folder / "server", leaf("localhost", server_key, ca, ca_key, server=True), server_key
    )
    out["client_cert"], out["client_key"] = _write(
        folder / "client", leaf("a client", client_key, ca, ca_key, server=False), client_key
    )
    return out


def token_file(folder: Path, n: int = 2) -> tuple[Path, list[str]]:
    """A token file with ``n`` random tokens (and a comment); returns it and the tokens."""
    tokens = [secrets.token_urlsafe(32) for _ in range(n)]
    path = folder / "tokens.txt"
    path.write_text("# tokens of the test clients\n" + "\n".join(tokens) + "\n\n")
    path.chmod(0o600)
    return path, tokens
