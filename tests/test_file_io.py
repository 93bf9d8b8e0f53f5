"""Atomic writes leave a whole file, with the permissions any new file gets."""
import json
import os
import stat

from kd_det.file_io import save_json


def test_save_json_is_whole_and_readable_like_any_new_file(tmp_path):
    path = tmp_path / "sub" / "r.json"
    old = os.umask(0o022)
    try:
        save_json(str(path), {"a": 1})
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == {"a": 1}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # not mkstemp's 0600
    assert os.listdir(path.parent) == ["r.json"]  # no temporary file left behind
