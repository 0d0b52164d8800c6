"""Models: the CIFAR-10 architectures (``architectures``), the k-NN of the edge tier
(``knn``), MACs per image (``macs``), any user's classifier loaded from any Keras format
(``loading``), checked against its data (``contract``), bridged from Keras 3 into tf-keras
(``bridge``, with its small layers for what tf-keras lacks: ``bridge_layers``), the graph of
any Keras model walked and rebuilt (``graph``), and the subject of notebooks 03-05 and
``assess``: a model with its data split and its float answers (``subject``).
"""
