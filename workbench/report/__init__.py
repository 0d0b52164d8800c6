"""What a run shows and keeps: figures and tables recorded next to each notebook
(``recorder``), the plots (``plots``), the widgets' callbacks (``widgets``), conclusions in
words from the recorded figures (``conclusions``) and the HTML pages (``page``).
"""
