"""configs/gpu.yaml, the real-size cluster run, loads with the run config's own loader.

Its paths are the cluster's mounts (/models, /data), which do not exist here: the test rebases
both mounts onto a temp folder, creates what the config names (an image folder, checkpoint
folders holding safetensors weights), and loads the result. Loaded as is, it fails with the
loader's one-line error naming a missing path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.job.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / "configs" / "gpu.yaml"
MOUNTS = ("/models", "/data")


def rebase(node, base: Path):
    """Every string under a mount point, moved under ``base`` (e.g. /data/x -> base/data/x)."""
    if isinstance(node, dict):
        return {k: rebase(v, base) for k, v in node.items()}
    if isinstance(node, list):
        return [rebase(v, base) for v in node]
    if isinstance(node, str) and any(node == m or node.startswith(m + "/") for m in MOUNTS):
        return str(base / node.lstrip("/"))
    return node


def checkpoint_dir(path: Path) -> None:
    from safetensors.numpy import save_file

    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}")
    save_file({"w": np.zeros(1, np.float32)}, str(path / "model.safetensors"))


def test_gpu_config_loads_once_its_mounts_exist(tmp_path):
    raw = yaml.safe_load(GPU.read_text())
    data = rebase(raw, tmp_path)
    (tmp_path / "data" / "images").mkdir(parents=True)
    for ckpt in (data["embedder"]["checkpoint"], data["generator"]["mtst"]["model"]["pretrained"],
                 data["negatives"]["instruct_pix2pix"]["model"]):
        checkpoint_dir(Path(ckpt))
    # a trained MTST folder (cirforge generator train --out), used as it is
    (Path(data["generator"]["mtst"]["model"]["pretrained"]) / "mtst_config.json").write_text("{}")
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    assert cfg.source.kind == "folder" and cfg.generator.kind == "mtst"
    assert cfg.embedder.device == cfg.mining.device == "cuda"
    assert cfg.generator.mtst.infer.device == "cuda" and cfg.generator.mtst.infer.dtype == "bfloat16"
    assert cfg.negatives.editor == "instruct_pix2pix"
    assert cfg.out_dir == tmp_path / "data" / "out" and cfg.cache_dir == tmp_path / "data" / "cache"
    assert cfg.runtime.ray_address is None  # RAY_ADDRESS comes from the pod


def test_gpu_config_names_the_missing_mount_in_one_line():
    if any(Path(m).exists() for m in MOUNTS):
        pytest.skip("this machine has a /models or /data mount")
    with pytest.raises(ConfigError) as err:
        load_config(GPU)
    msg = str(err.value)
    assert "\n" not in msg and any(m in msg for m in MOUNTS), msg
