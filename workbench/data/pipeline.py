"""tf.data input pipelines: seeded shuffling, batching, scaling and augmentation, shared by
cloud training and edge fine-tuning.
"""

from __future__ import annotations

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads

# ---------------------------------------------------------------- data pipeline


DEFAULT_INPUT_SCALE = 1 / 255  # CIFAR-10 models take pixels / 255


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    training: bool,
    augment: bool = False,
    seed: int = 0,
    input_scale: float | None = DEFAULT_INPUT_SCALE,
):
    """A tf.data pipeline of float32 images times ``input_scale``; optional augmentation.

    Args:
        x: images (N, H, W, C), any size and channel count, uint8 or float.
        y: integer labels (N,).
        batch_size: the (global) batch size.
        training: shuffle every epoch (seeded).
        augment: random horizontal flips and shifts: pad each side by an eighth of the
            image's size (4 pixels for CIFAR-10's 32), then crop back at random.
        seed: for shuffling and augmentation.
        input_scale: multiplies the pixels (CIFAR-10 models: 1/255); ``None``: as they are.
    """
    import tensorflow as tf

    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), not {x.shape}")
    h, w, c = (int(d) for d in x.shape[1:])
    ds = tf.data.Dataset.from_tensor_slices((x, np.asarray(y).astype(np.int64)))
    # Under multi-worker training each worker reads the same arrays and keeps its share of
    # every batch (there are no files to shard by).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    scale = None if input_scale is None else float(input_scale)

    def prepare(img, label):
        img = tf.cast(img, tf.float32)
        return (img if scale is None else img * scale), label

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        # One seed pair per image from a seeded stream zipped to the (seeded) shuffled images,
        # so a pipeline with the same seed gives the same views in the same order, however
        # many threads map it (a shared tf.random.Generator would be drawn in thread order).
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(4)
        ds = tf.data.Dataset.zip((ds, seeds))
        pad_h, pad_w = max(1, round(h / 8)), max(1, round(w / 8))

        def jitter(pair, seed4):
            img, label = pair
            seed4 = tf.reshape(seed4, (2, 2))
            img = tf.image.stateless_random_flip_left_right(img, seed=seed4[0])
            img = tf.image.resize_with_crop_or_pad(img, h + 2 * pad_h, w + 2 * pad_w)
            img = tf.image.stateless_random_crop(img, (h, w, c), seed=seed4[1])
            return img, label

        ds = ds.map(jitter, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
