"""maxsim.load: default aliases, local folders, hub ids without network."""

from __future__ import annotations

import subprocess
import sys

import pytest

import maxsim
from maxsim.models.loading import ModelLoadError


def test_default_aliases(default_model):
    assert default_model.name == "maxsim-e5-small-colbert"
    assert default_model.dims == (128, 96, 64)


def test_file_instead_of_folder(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file"):
        maxsim.load(f)


def test_not_a_path_nor_hub_id():
    with pytest.raises(ModelLoadError, match="neither an existing folder nor a hub id"):
        maxsim.load("no/such/folder/here")


def test_bad_dtype():
    with pytest.raises(ModelLoadError, match="dtype must be one of"):
        maxsim.load(dtype="float8")


def test_hub_id_without_network_says_to_pass_a_folder():
    code = (
        "import maxsim\n"
        "try:\n"
        "    maxsim.load('someone/some-colbert-model')\n"
        "except maxsim.models.ModelLoadError as e:\n"
        "    print('ERR', e)\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "ERR" in out.stdout, out.stderr[-2000:]
    assert "local folder" in out.stdout


def test_auto_dtype_follows_the_cpu():
    import torch

    from maxsim.models.loading import _parse_dtype, cpu_has_native_bf16

    expect = torch.bfloat16 if (torch.cuda.is_available() or cpu_has_native_bf16()) else torch.float32
    assert _parse_dtype("auto") == expect
    assert _parse_dtype(None) == torch.float32
