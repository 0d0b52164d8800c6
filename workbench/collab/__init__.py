"""Edge and cloud together: the edge model against the served cloud model on every link
(``compare``), split computing at every valid cut point (``split``) and edge-first cascades
(``cascade``).
"""
