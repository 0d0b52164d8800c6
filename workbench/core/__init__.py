"""The floor every wing stands on: where files go (``paths``), writes that are whole or
absent (``atomic``), library noise filtered (``quiet``), progress bars that end as one
summary line (``progressbar``), memory measured and capped (``memory``), latency after
warm-up (``timing``), what this machine is (``machine``), the metrics every stage shares
(``metrics``) and how an error is told (``errors``).
Nothing here knows about models or notebooks.
"""
