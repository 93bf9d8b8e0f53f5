"""What kd_det's training scripts share: Detectron2's arguments plus datasets from the
command line, and Detectron2's launch."""
from detectron2.engine import default_argument_parser, launch

from ..data import add_dataset_arguments

__all__ = ["argument_parser", "launch_main"]


def argument_parser():
    """Detectron2's default_argument_parser with --dataset-coco / --dataset-voc."""
    return add_dataset_arguments(default_argument_parser())


def launch_main(main, args) -> None:
    """Detectron2's launch of `main(args)` over --num-gpus / --num-machines processes."""
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
