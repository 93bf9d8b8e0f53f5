"""No file runs code: a KD config cannot opt itself into unsafe YAML, a LazyConfig .yaml is
read as data (and kd_det's student export is plain YAML), a .pkl is unpickled once and
restricted, an auxiliary trainer's weights are refused naming the key and the file, and an
export to a folder that cannot be written names it. Each payload writes a marker file: the
proof that code ran."""
import os
import pickle
import sys

import pytest
import torch
import yaml
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.utils.file_io import PathManager
from omegaconf import OmegaConf

import kd_det
from kd_det.checkpoint import SafeDetectionCheckpointer
from kd_det.config import merge_kd_config_file
from kd_det.engine import export_lazy_student
from kd_det.engine.lazy_yaml import load_lazy_config
from kd_det.modeling.teacher import build_teacher_cfg

from ..auxiliary.test_trainer import _cfg as _aux_cfg
from ..auxiliary.test_trainer import _Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import lazyconfig_train_net  # noqa: E402
import train_net  # noqa: E402


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _kd_cfg():
    cfg = get_cfg()
    kd_det.add_kd_config(cfg)
    kd_det.add_mobilenet_config(cfg)
    return cfg


# ---- yacs: the opt-in into unsafe YAML comes from the command line or code only ----------
@pytest.mark.parametrize("where", ["file", "base", "teachers"])
def test_kd_config_cannot_opt_itself_into_unsafe_yaml(tmp_path, where):
    proof = tmp_path / "pwned"
    teacher = tmp_path / "teacher.yaml"
    teacher.write_text(f"X: !!python/object/apply:os.system ['touch {proof}']\n")
    opt_in = "KD:\n  TEACHER:\n    ALLOW_UNSAFE_YAML: True\n"
    base = os.path.join(ROOT, "configs/builtin/kd.yaml")
    if where == "base":
        (tmp_path / "base.yaml").write_text(f"_BASE_: {base}\n{opt_in}")
        text = f"_BASE_: base.yaml\nKD:\n  TEACHER:\n    CONFIG_FILE: {teacher}\n"
    elif where == "teachers":
        text = f"_BASE_: {base}\n{opt_in}  TEACHERS: [['{teacher}', 'w.pth']]\n"
    else:
        text = f"_BASE_: {base}\n{opt_in}    CONFIG_FILE: {teacher}\n"
    kd = tmp_path / "kd.yaml"
    kd.write_text(text)
    args = train_net.argument_parser().parse_args(
        ["--config-file", str(kd), "OUTPUT_DIR", str(tmp_path / "out")])
    with pytest.raises(ValueError, match=f"(?s){kd}.*KD.TEACHER.ALLOW_UNSAFE_YAML.*command line"):
        train_net.setup(args)
    assert not proof.exists() and not (tmp_path / "out").exists()


def test_unsafe_teacher_yaml_is_read_only_when_the_command_line_asks(tmp_path):
    teacher = tmp_path / "teacher.yaml"
    teacher.write_text(f"_BASE_: {ROOT}/configs/builtin/teacher.yaml\n"
                       "MODEL:\n  PIXEL_STD: !!python/tuple [1.0, 1.0, 1.0]\n")
    kd = tmp_path / "kd.yaml"
    kd.write_text(f"_BASE_: {ROOT}/configs/builtin/kd.yaml\n"
                  f"KD:\n  TEACHER:\n    CONFIG_FILE: {teacher}\n")
    cfg = _kd_cfg()
    merge_kd_config_file(cfg, str(kd))
    with pytest.raises(ValueError, match="KD.TEACHER.ALLOW_UNSAFE_YAML True` on the command"):
        build_teacher_cfg(cfg)
    cfg.merge_from_list(["KD.TEACHER.ALLOW_UNSAFE_YAML", "True"])  # as train_net's opts
    assert list(build_teacher_cfg(cfg).MODEL.PIXEL_STD) == [1.0, 1.0, 1.0]


# ---- LazyConfig .yaml: data, never code ------------------------------------------------
@pytest.mark.parametrize("body, match", [
    ("model: !!python/object/apply:os.system ['touch {proof}']\n", "line 1: .*python"),
    ("model: {{_target_: os.system, command: 'touch {proof}'}}\n", "model._target_='os.system'"),
    ("model: {{_target_: kd_det.modeling.teacher.os.system, command: 'touch {proof}'}}\n",
     "model._target_='kd_det.modeling.teacher.os.system'"),
    ("model:\n  teacher: {{_target_: kd_det.modeling.load_teacher, config_file: t.yaml, "
     "weights: w.pth, allow_unsafe_yaml: true}}\n",
     "model.teacher.allow_unsafe_yaml is set in the file.*=True on the command line"),
])
def test_lazyconfig_yaml_runs_no_code(tmp_path, body, match):
    proof = tmp_path / "pwned"
    path = tmp_path / "x.yaml"
    path.write_text(body.format(proof=proof))
    args = lazyconfig_train_net.argument_parser().parse_args(
        ["--config-file", str(path), f"train.output_dir={tmp_path / 'out'}"])
    with pytest.raises(ValueError, match=f"(?s){path}.*{match}"):
        lazyconfig_train_net.setup(args)
    assert not proof.exists()


@pytest.fixture(scope="module")
def student_run(tmp_path_factory):
    """configs/builtin/student.py as the student of a distiller's config, and a training
    checkpoint of it (student.* weights, an adapter beside them)."""
    tmp = tmp_path_factory.mktemp("lazy_export")
    cfg = LazyConfig.load(os.path.join(ROOT, "configs/builtin/student.py"))
    cfg.model.backbone.bottom_up.weights = ""
    cfg.model = OmegaConf.create({"student": cfg.model}, flags={"allow_objects": True})
    torch.manual_seed(0)
    state = {f"student.{k}": v for k, v in instantiate(cfg.model.student).state_dict().items()}
    state["adapters.0.weight"] = torch.zeros(1)
    ckpt = str(tmp / "model_final.pth")
    torch.save({"model": state}, ckpt)
    return cfg, ckpt


def test_lazy_student_export_is_plain_yaml_and_builds_the_same_model(student_run, tmp_path,
                                                                     one_thread):
    cfg, ckpt = student_run
    out = export_lazy_student(cfg, ckpt, str(tmp_path))
    text = open(out["config"]).read()
    assert "!!python" not in text and "ShapeSpec" in text
    assert yaml.safe_load(text)["model"]["roi_heads"]["box_head"]["input_shape"]["channels"] == 32
    exported = load_lazy_config(out["config"])
    assert exported.train.init_checkpoint == out["weights"]
    model = instantiate(exported.model)
    torch.manual_seed(0)
    original = instantiate(cfg.model.student)
    ours, theirs = model.state_dict(), original.state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    SafeDetectionCheckpointer(model).load(out["weights"])
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, theirs[k], rtol=0, atol=0, msg=k)
    assert not any(n.endswith((".tmp", ".pkl")) for n in os.listdir(tmp_path))


def test_export_to_a_folder_that_cannot_be_written_names_it(student_run, tmp_path):
    cfg, ckpt = student_run
    (tmp_path / "file").write_text("")
    folders = [str(tmp_path / "file" / "export")]
    try:  # a read-only folder, for root too: sysfs
        open("/sys/kernel/kd_det_probe", "w").close()
    except OSError:
        folders.append("/sys/kernel/export")
    for folder in folders:
        with pytest.raises(PermissionError, match=f"the export folder '{folder}' cannot be "
                                                  "written.*choose a folder"):
            export_lazy_student(cfg, ckpt, folder)
    assert os.listdir(tmp_path) == ["file"]


# ---- .pkl weights: unpickled once, restricted -------------------------------------------
def test_pkl_swapped_between_reads_runs_no_code(tmp_path, monkeypatch):
    """The file is replaced by a payload as soon as it has been opened once: a second read
    (a check, then Detectron2's plain pickle.load) would run it."""
    proof = tmp_path / "pwned"
    path = tmp_path / "w.pkl"
    weight = torch.arange(4.0).reshape(2, 2)
    with open(path, "wb") as f:
        pickle.dump({"model": {"weight": weight.numpy(), "bias": torch.ones(2).numpy()},
                     "__author__": "test"}, f)
    opened = []
    real_open = PathManager.open

    def open_then_swap(name, mode="r", **kw):
        f = real_open(name, mode, **kw)
        if str(name) == str(path) and not opened:
            opened.append(name)
            with open(tmp_path / "swap", "wb") as g:
                pickle.dump({"model": {}, "__author__": _Payload(proof)}, g)
            os.replace(tmp_path / "swap", path)  # the open file keeps its contents
        return f

    monkeypatch.setattr(PathManager, "open", open_then_swap)
    model = torch.nn.Linear(2, 2)
    SafeDetectionCheckpointer(model).load(str(path))
    assert opened and not proof.exists()
    assert torch.equal(model.weight, weight)
    with pytest.raises(ValueError, match="w.pkl is not a plain weights file"):
        SafeDetectionCheckpointer(model).load(str(path))  # the payload, read alone
    assert not proof.exists()


def test_caffe2_style_pkl_loads_through_the_single_read(tmp_path):
    path = tmp_path / "c2.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": {"weight": torch.ones(2, 2).numpy(), "bias": torch.ones(2).numpy(),
                               "weight_momentum": torch.zeros(2, 2).numpy()}}, f)
    model = torch.nn.Linear(2, 2)
    SafeDetectionCheckpointer(model).load(str(path))
    assert torch.equal(model.weight, torch.ones(2, 2))


# ---- auxiliary trainers: weights with code, named -------------------------------------
def test_aux_weights_and_resume_with_a_payload_name_the_key_and_file(tmp_path):
    proof = tmp_path / "pwned"
    bad = tmp_path / "evil.pth"
    torch.save({"model": {}, "x": _Payload(proof)}, bad)
    cfg = _aux_cfg(tmp_path / "a", 10)
    cfg.MODEL.WEIGHTS = str(bad)
    with pytest.raises(ValueError, match=f"^MODEL.WEIGHTS: {bad} holds objects other than "
                                         "tensors.*GLOBAL.*could run code"):
        _Trainer(cfg).resume_or_load(resume=False)
    out = tmp_path / "b"
    out.mkdir()
    torch.save({"model": {}, "x": _Payload(proof)}, out / "model_0000009.pth")
    (out / "last_checkpoint").write_text("model_0000009.pth")
    with pytest.raises(ValueError, match="^--resume .*model_0000009.pth holds objects other"):
        _Trainer(_aux_cfg(out, 10)).resume_or_load(resume=True)
    assert not proof.exists()
