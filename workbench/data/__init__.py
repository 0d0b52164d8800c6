"""Data: the labelled image dataset type and users' datasets (``datasets``), CIFAR-10 found,
cached, verified or downloaded (``cifar10``), image counts read cheaply for the plan
(``counts``), data sized from its headers before it is decoded (``sizes``), and the tf.data
pipelines training and fine-tuning share (``pipeline``).
"""
