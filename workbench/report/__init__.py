"""What a run shows and keeps: figures, tables and exercise checks recorded next to each
notebook (``recorder``), the plots (``plots``, laid out by ``layout``), the widgets' callbacks
(``widgets``), conclusions in words from the recorded figures (``conclusions``) and the HTML
pages (``page``).
"""
