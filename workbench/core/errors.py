"""How an error is told to a user: its first meaningful line."""

from __future__ import annotations

import workbench  # noqa: F401 - selects Keras 2 for tf.keras before TensorFlow loads


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__
