"""The auxiliary tasks, apart from the detection plugin: classification KD on
Fashion-MNIST (``classification``), low-resolution face recognition KD (``face``) and
PISR super-resolution KD (``sr``), all on one Detectron2 training loop (``trainer``).

Nothing here is imported by ``import kd_det`` or by the detection modules. A task package
registers its trainer when imported (tools/train_aux.py imports all three).
"""
