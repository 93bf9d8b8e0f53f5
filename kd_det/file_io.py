"""Files written atomically: through a temporary file and a rename, so that a crash leaves
the previous file or none, never half of one."""
import json
import os
import tempfile

import torch

__all__ = ["save_json", "atomic_torch_save", "check_writable"]


def save_json(path: str, obj) -> None:
    """json.dump of `obj` (indented) at `path`, its folder created."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide the file from others
    os.replace(tmp, path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_torch_save(obj, path: str) -> None:
    """torch.save of `obj` at `path` (a checkpoint is never half-written)."""
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def check_writable(folder: str, what: str = "the output folder") -> None:
    """Refuse, naming it, a `folder` that cannot be written (read-only, or under a file),
    before work whose result goes there; torch's own error ("open file failed") names
    nothing. Nothing is created: the nearest existing ancestor is probed."""
    probe = os.path.abspath(folder)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    try:
        if not os.path.isdir(probe):
            raise NotADirectoryError(f"{probe} is a file")
        fd, tmp = tempfile.mkstemp(dir=probe, suffix=".tmp")
    except OSError as e:
        raise PermissionError(f"{what} {folder!r} cannot be written ({e.strerror or e}): "
                              "choose a folder you can write to.") from e
    os.close(fd)
    os.remove(tmp)
