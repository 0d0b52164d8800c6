"""The edge tier: the LiteRT runtime (``runtime``), fine-tuning shared by the techniques
(``finetune``), pruning, clustering and quantization-aware training (``techniques``), TFLite
conversion and the quantization arithmetic (``convert``), structured pruning planned on the
graph (``channel_plan``) and carried out (``slim``, with batch-norm folding), knowledge
distillation (``distill``), every variant built and measured (``variants``) and the budgeted
search over them (``search``).
"""
