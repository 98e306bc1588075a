"""Security (issue 7.5): safetensors only, no code from checkpoints unless asked, no path that
escapes its root, no unpickling of files. One test (or more) per rule."""
from __future__ import annotations

import ast
import json
import os
import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.job.config import ConfigError, parse_config
from pipeline.config import SourceConfig
from pipeline.sources import CirrSource, FashionIQSource, ParquetSource, make_source

REPO = Path(__file__).resolve().parents[2]
PRODUCT_DIRS = ("pipeline", "generators", "filters", "trainers", "flows")


class Payload:
    """Unpickling this runs code: it writes a marker file (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


@pytest.fixture
def tiny_clip(tmp_path):
    """A real (random, tiny) CLIP checkpoint folder as save_pretrained writes it."""
    from tests.checkpoints import save_tiny_clip

    return save_tiny_clip(tmp_path / "clip")


# -- 1. safetensors only ------------------------------------------------------------------------
def test_pickle_weights_are_never_loaded(tiny_clip, tmp_path):
    from pipeline.checkpoints import CheckpointError
    from pipeline.config_mining import EmbedderConfig
    from pipeline.embedder import ClipEmbedder

    assert ClipEmbedder(tiny_clip, device="cpu").dim == 8  # the safetensors folder loads
    marker = tmp_path / "PWNED"
    (tiny_clip / "model.safetensors").unlink()
    (tiny_clip / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(OSError):  # transformers with use_safetensors=True: no .bin fallback
        ClipEmbedder(tiny_clip, device="cpu")
    with pytest.raises(ConfigError, match=r"embedder.checkpoint.*only pickle weights \(pytorch_model.bin\)"):
        parse_config({"embedder": {"checkpoint": str(tiny_clip)}})
    with pytest.raises(CheckpointError, match="only pickle weights"):
        ClipEmbedder.from_config(EmbedderConfig.model_construct(checkpoint=str(tiny_clip)))
    assert not marker.exists()
    # the payload is live: only the loaders' refusal kept it from running
    import torch

    with pytest.raises(pickle.UnpicklingError):
        torch.load(tiny_clip / "pytorch_model.bin", weights_only=True)
    assert not marker.exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = f.value if isinstance(f, ast.Attribute) else None
            owner_name = getattr(owner, "id", getattr(owner, "attr", "")) if owner is not None else ""
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            yield node, name, owner_name, kw


def _true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


NOT_WEIGHTS = ("Tokenizer", "Processor", "Config", "FeatureExtractor")


def scan(repo: Path, dirs: tuple[str, ...]) -> list[str]:
    """Every weight load without safetensors, unpickling, or hard-coded trust_remote_code in ``dirs``."""
    problems = []
    for path in sorted(p for d in dirs for p in (repo / d).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        where = lambda n: f"{path.relative_to(repo)}:{n.lineno}"  # noqa: E731
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                for m in mods:
                    if m and m.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "cloudpickle", "shelve"):
                        problems.append(f"{where(node)}: imports {m}")
        for node, name, owner, kw in _calls(tree):
            if name == "from_pretrained" and owner and not any(s in owner for s in NOT_WEIGHTS) \
                    and owner not in ("cls", "MTSTGenerator") and not _true(kw.get("use_safetensors")):
                problems.append(f"{where(node)}: {owner}.from_pretrained without use_safetensors=True")
            if name == "load" and owner == "torch" and not _true(kw.get("weights_only")):
                problems.append(f"{where(node)}: torch.load without weights_only=True")
            if name == "load" and owner == "np" and _true(kw.get("allow_pickle")):
                problems.append(f"{where(node)}: np.load(allow_pickle=True)")
            if name in ("read_pickle", "loads") and owner in ("pd", "pickle"):
                problems.append(f"{where(node)}: {owner}.{name}")
            if _true(kw.get("trust_remote_code")):
                problems.append(f"{where(node)}: trust_remote_code=True hard-coded (it must come from a config)")
    return problems


def test_code_loads_weights_from_safetensors_and_never_unpickles():
    assert scan(REPO, PRODUCT_DIRS) == []


def test_the_scan_finds_what_it_looks_for(tmp_path):
    # the scan above is not vacuous: planted violations are found
    bad = tmp_path / "pipeline" / "bad.py"
    bad.parent.mkdir()
    bad.write_text("import pickle\nimport torch\nfrom transformers import CLIPModel\n"
                   "CLIPModel.from_pretrained('x')\ntorch.load('w.pt')\nAutoModel.from_pretrained('x', trust_remote_code=True)\n"
                   "np.load('a.npy', allow_pickle=True)\n")
    found = "\n".join(scan(tmp_path, ("pipeline",)))
    for what in ("imports pickle", "CLIPModel.from_pretrained without", "torch.load without",
                 "AutoModel.from_pretrained without", "trust_remote_code=True", "allow_pickle=True"):
        assert what in found


# -- 2. trust_remote_code off --------------------------------------------------------------------
def test_code_shipped_with_a_checkpoint_does_not_run(tiny_clip, tmp_path):
    from transformers import AutoTokenizer

    from pipeline.embedder import ClipEmbedder

    marker = tmp_path / "PWNED"
    (tiny_clip / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('code ran')\n"
                                       "from transformers import PreTrainedTokenizerFast\n"
                                       "class EvilTokenizer(PreTrainedTokenizerFast):\n    pass\n")
    tc = json.loads((tiny_clip / "tokenizer_config.json").read_text())
    tc.update(auto_map={"AutoTokenizer": [None, "evil.EvilTokenizer"]}, tokenizer_class="EvilTokenizer")
    (tiny_clip / "tokenizer_config.json").write_text(json.dumps(tc))
    embedder = ClipEmbedder(tiny_clip, device="cpu")
    assert type(embedder.tokenizer).__name__ != "EvilTokenizer"  # the library's own class
    assert not marker.exists()
    AutoTokenizer.from_pretrained(tiny_clip, trust_remote_code=True)  # what turning it on would do
    assert marker.read_text() == "code ran"


# -- 3. paths cannot escape their root -----------------------------------------------------------
def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def png(color=(10, 200, 30)) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def dataset(tmp_path):
    """A tiny finished dataset: one committed unit, its manifest."""
    from pipeline.shards import ShardWriter, finalize
    from tests.pipeline.rows import row

    root = tmp_path / "ds"
    w = ShardWriter(root)
    rows = [row(0, i) for i in range(3)]
    w.expect(0, len(rows))
    w.add(rows)
    finalize(root, {}, "hash", units_total=1)
    return root


@pytest.mark.parametrize("evil", ["../../etc/passwd", "/etc/passwd", "data/../../outside.parquet"])
def test_manifest_shard_paths_cannot_leave_the_dataset(dataset, tmp_path, evil):
    from pipeline.export import export_dataset
    from pipeline.shards import MANIFEST, UnsafePath, load_manifest, verify

    assert verify(dataset) == []
    m = json.loads((dataset / MANIFEST).read_text())
    m["shards"][0]["path"] = evil
    (dataset / MANIFEST).write_text(json.dumps(m))
    for read in (load_manifest, verify):
        with pytest.raises(UnsafePath, match="not a relative path inside the dataset"):
            read(dataset)
    with pytest.raises(UnsafePath):
        export_dataset(dataset, "cirr", tmp_path / "export")


def test_manifest_shard_path_through_a_link_out_is_refused(dataset, tmp_path):
    from pipeline.shards import MANIFEST, UnsafePath, verify

    m = json.loads((dataset / MANIFEST).read_text())
    write(tmp_path / "other" / "part.parquet", (dataset / m["shards"][0]["path"]).read_bytes())
    os.symlink(tmp_path / "other", dataset / "data" / "escape")
    m["shards"][0]["path"] = "data/escape/part.parquet"
    (dataset / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(UnsafePath, match="links outside the dataset folder"):
        verify(dataset)


def test_unit_records_cannot_point_outside_either(dataset):
    from pipeline.shards import UNITS_DIR, UnsafePath, finalize

    rec_file = next((dataset / UNITS_DIR).glob("unit-*.json"))
    rec = json.loads(rec_file.read_text())
    rec["shards"][0]["path"] = "../../../tmp/x.parquet"
    rec_file.write_text(json.dumps(rec))
    with pytest.raises(UnsafePath):
        finalize(dataset, {}, "hash", units_total=1)


def test_cirr_and_fashioniq_paths_outside_the_root_are_skipped(tmp_path):
    root = tmp_path / "cirr"
    secret = write(tmp_path / "secret.png", png())
    write(root / "train" / "ok.png", png())
    split = {"ok": "./train/ok.png", "up": "../secret.png", "abs": str(secret), "deep": "./train/../../secret.png"}
    caps = [{"reference": "ok", "target_hard": "up", "caption": "x"}, {"reference": "ok", "target_hard": "ok", "caption": "y"}]
    write(root / "captions" / "cap.rc2.train.json", json.dumps(caps).encode())
    write(root / "image_splits" / "split.rc2.train.json", json.dumps(split).encode())
    src = CirrSource(root)
    assert [r["image_id"] for r in src] == ["ok"]
    assert {i: r.split(":")[0] for i, r in src.skipped} == {"abs": "outside_root", "deep": "outside_root",
                                                           "up": "outside_root"}
    assert [t["target_id"] for t in src.triplets()] == ["ok"]
    assert src.skipped_triplets[0][1].startswith("bad_image: up: outside_root")

    fiq = tmp_path / "fiq"
    write(fiq / "images" / "B1.png", png())
    write(fiq / "B2.png", png((1, 2, 3)))
    write(fiq / "captions" / "cap.dress.train.json", json.dumps(
        [{"candidate": "B1", "target": "../B2", "captions": ["a", "b"]}]).encode())
    src = FashionIQSource(fiq)
    assert [r["image_id"] for r in src] == ["B1"] and src.skipped[0][1].startswith("outside_root")
    assert src.triplets() == []


def test_parquet_path_cells_stay_in_the_tables_folder(tmp_path):
    write(tmp_path / "secret.png", png())
    write(tmp_path / "t" / "in.png", png((9, 9, 9)))
    cells = [{"bytes": None, "path": p} for p in ("in.png", "../secret.png", str(tmp_path / "secret.png"))]
    pq.write_table(pa.table({"image": cells, "id": ["a", "b", "c"]}), tmp_path / "t" / "t.parquet")
    src = ParquetSource(tmp_path / "t" / "t.parquet", id_column="id")
    assert [r["image_id"] for r in src] == ["a"]
    assert {i: r.split(":")[0] for i, r in src.skipped} == {"b": "outside_root", "c": "outside_root"}


def test_config_dataset_name_cannot_leave_out_dir():
    for name in ("../elsewhere", "/abs", "a/b"):
        with pytest.raises(ConfigError, match=r"bad value for 'name'"):
            parse_config({"name": name})


def test_export_names_never_leave_the_export_folder(tmp_path):
    from pipeline.export import image_name

    for image_id in ("../../etc/passwd", "/etc/passwd", "a/../../b", "..", "."):
        name = image_name(image_id)
        assert "/" not in name and not name.startswith(".") and (tmp_path / name).resolve().parent == tmp_path.resolve()


def test_make_source_folder_symlink_out_is_skipped(tmp_path):
    write(tmp_path / "outside.png", png())
    (tmp_path / "pool").mkdir()
    os.symlink(tmp_path / "outside.png", tmp_path / "pool" / "link.png")
    write(tmp_path / "pool" / "own.png", png((5, 5, 5)))
    src = make_source(SourceConfig(kind="folder", path=tmp_path / "pool"))
    assert [r["image_id"] for r in src] == ["own.png"] and src.skipped[0][1].startswith("outside_root")
