"""The cloud tier: training under ``tf.distribute`` with checkpoints (``train``), exports in
TensorFlow Serving's layout (``export``), the model server (``serving``: REST and gRPC,
versions, batching, object storage) and its client (``client``).
"""
