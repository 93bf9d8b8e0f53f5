"""DistillRCNN under DistributedDataParallel: 2 CPU processes, gloo backend."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.config import get_cfg

import kd_det

from ..detection_utils import kd_cfg, make_coco_dataset, short_run


def _worker(rank, world_size, tmp, cfg_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank,
                            world_size=world_size)
    torch.set_num_threads(1)
    try:
        from kd_det.engine import KDTrainer

        make_coco_dataset(os.path.join(tmp, "data"), "kd_ddp_train", n_images=8)
        cfg = get_cfg()
        kd_det.add_kd_config(cfg)
        cfg.merge_from_file(cfg_path)
        trainer = KDTrainer(cfg)
        model = trainer._trainer.model
        assert isinstance(model, torch.nn.parallel.DistributedDataParallel)
        assert not any(p is q for p in model.parameters()
                       for q in model.module.teacher.parameters())
        trainer.train()
        # Parameters must agree across ranks; BatchNorm running statistics are per rank
        # (broadcast_buffers=False, as in Detectron2; use SyncBN to share them).
        torch.save({k: v.detach().clone() for k, v in model.module.named_parameters()},
                   os.path.join(tmp, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(300)
def test_two_process_gloo_training_keeps_ranks_identical(tmp_path):
    tmp = str(tmp_path)
    cfg = kd_cfg(tmp)
    short_run(cfg, ["kd_ddp_train"], [], ims_per_batch=4, iters=3)
    cfg.SOLVER.CHECKPOINT_PERIOD = 1000
    cfg.KD.TEACHER.EVAL_BEFORE_TRAIN = False
    cfg.OUTPUT_DIR = os.path.join(tmp, "out")
    cfg.SEED = 1
    cfg_path = os.path.join(tmp, "ddp.yaml")
    with open(cfg_path, "w") as f:
        f.write(cfg.dump())
    mp.spawn(_worker, args=(2, tmp, cfg_path), nprocs=2, join=True)
    r0 = torch.load(os.path.join(tmp, "rank0.pt"))
    r1 = torch.load(os.path.join(tmp, "rank1.pt"))
    assert r0.keys() == r1.keys()
    assert all(k.startswith(("student.", "adapters.")) for k in r0)
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    final = torch.load(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"), weights_only=False)
    assert torch.equal(final["model"]["adapters.adapters.p2_to_p2.weight"],
                       r0["adapters.adapters.p2_to_p2.weight"])
