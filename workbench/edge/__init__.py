"""The edge tier: the LiteRT runtime (``runtime``), fine-tuning shared by the techniques
(``finetune``), pruning, clustering and quantization-aware training (``techniques``), TFLite
conversion and the quantization arithmetic (``convert``), structured pruning planned on the
graph (``channel_plan``) and carried out (``slim``, with batch-norm folding), knowledge
distillation (``distill``), every variant built and measured (``variants``) and the budgeted
search over them (``search``). Devices as devices: a catalog of edge device classes
(``devices.json``) with latency estimated from this CPU's efficiency and a memory check
(``devices``), real measurements over SSH (``remote``, running the self-contained
``device_runner`` on the device) and the ``workbench devices`` command (``devices_cli``).
"""
