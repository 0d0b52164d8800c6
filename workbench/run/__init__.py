"""Running the notebooks: their parameters and profiles (``params``), execution with papermill
(``notebooks``), the throughput probe (``probe``), each notebook's work counted from its
parameters (``workload``), the time estimates (``estimates``) and the progress line
(``progress``).
"""
