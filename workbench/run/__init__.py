"""Running the notebooks: their parameters and profiles (``params``), execution with papermill
(``notebooks``), the throughput probe (``probe``), each notebook's work counted from its
parameters (``workload``), the time estimates (``estimates``), the progress line
(``progress``), the notebooks copied out of an installed package (``course``) and the executed
notebooks as a static site (``site``).
"""
