"""LazyConfig ``.yaml`` files as data, never code.

Detectron2's ``LazyConfig.load`` reads ``.yaml`` with ``yaml.unsafe_load``, so a
``!!python`` tag runs code, and ``instantiate`` calls whatever a ``_target_`` names
(``os.system`` included). :func:`load_lazy_config` reads ``.yaml`` as plain YAML and lets
its ``_target_`` name only the model, data, evaluation and solver modules of Detectron2,
fvcore, torch and kd_det. :func:`plain_lazy_config` turns the objects a ``.py`` config may
hold (dataclasses such as ShapeSpec) into LazyCall nodes, so that what kd_det saves reads
back through that loader. A ``.py`` LazyConfig is a Python program by Detectron2's design
and is loaded as one.
"""
import dataclasses

import yaml
from detectron2.config import LazyConfig
from detectron2.utils.file_io import PathManager
from detectron2.utils.registry import locate
from omegaconf import OmegaConf, SCMode

__all__ = ["SAFE_TARGET_MODULES", "load_lazy_config", "plain_lazy_config", "read_plain_yaml"]

# What a LazyConfig .yaml may call: the modules whose callables build models, data,
# evaluators and solvers.
SAFE_TARGET_MODULES = (
    "detectron2.modeling", "detectron2.layers", "detectron2.data", "detectron2.evaluation",
    "detectron2.solver", "fvcore.common.param_scheduler", "torch.nn", "torch.optim",
    "kd_det.modeling", "kd_det.data", "kd_det.engine.lazy",
)
_OPT_IN = "allow_unsafe_yaml"  # load_teacher's opt-in: code or the command line only
_PLAIN = (str, int, float, bool, type(None))


def read_plain_yaml(path: str):
    """yaml.safe_load of `path`; a ``!!python`` tag is refused, naming the file."""
    with PathManager.open(path) as f:
        try:
            return yaml.safe_load(f)
        except yaml.constructor.ConstructorError as e:
            line = e.problem_mark.line + 1 if e.problem_mark else "?"
            raise ValueError(
                f"{path}, line {line}: {e.problem}. A LazyConfig .yaml is read as plain "
                "data, because a Python tag could run code: save it again with kd_det "
                "(plain YAML), or write the config as a .py LazyConfig you trust."
            ) from e
        except yaml.YAMLError as e:
            raise ValueError(f"{path} is not valid YAML: {e}") from e


def _within_safe_modules(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in SAFE_TARGET_MODULES)


def _is_safe_target(name) -> bool:
    if not isinstance(name, str) or any(p.startswith("__") for p in name.split(".")):
        return False
    if not _within_safe_modules(name):
        return False
    try:
        obj = locate(name)  # imports only modules within SAFE_TARGET_MODULES
    except Exception:
        return False
    # "kd_det.modeling.teacher.os.system" starts well but is os.system: check its home.
    return callable(obj) and _within_safe_modules(getattr(obj, "__module__", None) or "")


def _check_data(node, path: str, key: str = "") -> None:
    if isinstance(node, list):
        for i, v in enumerate(node):
            _check_data(v, path, f"{key}[{i}]")
        return
    if not isinstance(node, dict):
        return
    for k, v in node.items():
        at = f"{key}.{k}" if key else str(k)
        if k == "_target_" and not _is_safe_target(v):
            raise ValueError(
                f"{path}: {at}={v!r} is not a callable of {', '.join(SAFE_TARGET_MODULES)}; "
                "a LazyConfig .yaml may call only those (it is data, not code). Write the "
                "config as a .py LazyConfig you trust to call anything else.")
        if k == _OPT_IN and v:
            raise ValueError(
                f"{path}: {at} is set in the file; a config file cannot opt itself into "
                f"unsafe YAML. Pass {at}=True on the command line (or "
                f"load_teacher(..., {_OPT_IN}=True) in code) for a teacher file you trust.")
        _check_data(v, path, at)


def load_lazy_config(path: str):
    """LazyConfig.load, with a ``.yaml`` read as data: plain YAML, ``_target_`` within
    SAFE_TARGET_MODULES, no file-set ``allow_unsafe_yaml``; each refusal names the file
    and the key. A ``.py`` file is Python and runs: give only configs you trust."""
    if not path.endswith((".yaml", ".yml")):
        return LazyConfig.load(path)
    data = read_plain_yaml(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds {type(data).__name__}, not a LazyConfig mapping")
    _check_data(data, path)
    return OmegaConf.create(data, flags={"allow_objects": True})


def _plain(value, key: str):
    if isinstance(value, dict):
        return {k: v if k == "_target_" else _plain(v, f"{key}.{k}" if key else k)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _plain(getattr(value, f.name), f"{key}.{f.name}")
                  for f in dataclasses.fields(value)}
        cls = type(value)  # named, not given: OmegaConf takes a dataclass type for a schema
        return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **fields}
    if not isinstance(value, _PLAIN):
        raise ValueError(
            f"{key} holds a {type(value).__name__}, which a saved config cannot hold as "
            "plain YAML; give it as a LazyCall (L(cls)(...)) or a plain value.")
    return value


def plain_lazy_config(cfg):
    """A copy of `cfg` whose values are plain data and LazyCall nodes (a dataclass such as
    ShapeSpec becomes ``{_target_: its class, fields...}``), so that LazyConfig.save
    writes no Python tag; instantiating it builds the same objects. Interpolations are
    kept. Anything else that is not plain is refused, naming its key."""
    data = OmegaConf.to_container(cfg, resolve=False,
                                  structured_config_mode=SCMode.INSTANTIATE)
    return OmegaConf.create(_plain(data, ""), flags={"allow_objects": True})
