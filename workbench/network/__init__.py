"""Networks between edge and cloud: links and the latency model (``latency``), real
links built with network namespaces and traffic shaping (``emulation``), transfers timed over
them (``linkbench``) and the model checked against those measurements (``validation``).
"""
