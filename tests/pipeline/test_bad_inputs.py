"""Bad inputs (issue 7.4): every one is converted, skipped with its reason, or a one-line error,
and the counts add up (seen = kept + skipped at the source; rows in = kept + rejected in a run)."""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import stat
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pipeline.job.config import ConfigError, parse_config
from pipeline.config import SourceConfig
from pipeline.sources import CirrSource, FolderSource, decode_image, make_source
from pipeline.sources.base import not_regular


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise(w=48, h=32, seed=0, mode="RGB") -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB").convert(mode)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width: int, height: int, bit_depth: int, color_type: int, scanlines: bytes) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB, nor lie about a size)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(scanlines))
            + png_chunk(b"IEND", b""))


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def bad_folder(tmp_path):
    root = tmp_path / "pool"
    good = noise(seed=1)
    write(root / "ok" / "good.png", encode(good, "PNG"))
    write(root / "ok" / "good2.png", encode(good, "PNG"))                      # duplicate image
    write(root / "bad" / "truncated.jpg", encode(noise(256, 256, seed=2), "JPEG")[:2000])
    write(root / "bad" / "zero.jpg", b"")
    write(root / "bad" / "text.jpg", b"Dear diary, this is not a JPEG.\n")
    write(root / "bad" / "one-pixel.png", encode(Image.new("RGB", (1, 1), "red"), "PNG"))
    # a bomb: the header claims 100000 x 100000 pixels (10 gigapixels); the file is 60 bytes
    write(root / "bad" / "bomb.png", raw_png(100_000, 100_000, 8, 0, b"\x00" * 16))
    # converted to upright 8-bit RGB
    write(root / "conv" / "cmyk.jpg", encode(Image.new("CMYK", (32, 24), (0, 255, 255, 0)), "JPEG", quality=95))
    write(root / "conv" / "gray16.png", encode(Image.fromarray(np.full((24, 32), 40000, np.uint16)), "PNG"))
    rgb16 = np.zeros((24, 32, 3), ">u2")
    rgb16[..., 0], rgb16[..., 1], rgb16[..., 2] = 0xFFFF, 0x8000, 0x00FF   # 8-bit: 255, 128, 0
    write(root / "conv" / "rgb16.png", raw_png(32, 24, 16, 2, b"".join(b"\x00" + r.tobytes() for r in rgb16)))
    rgba = np.zeros((24, 32, 4), np.uint8)
    rgba[...] = (255, 0, 0, 128)   # half-transparent red
    rgba[:, :16, 3] = 0            # left half fully transparent
    write(root / "conv" / "rgba.png", encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    pal = Image.new("P", (32, 24), 1)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    pal.paste(0, (0, 0, 16, 24))   # left half: index 0, declared transparent
    write(root / "conv" / "palette.png", encode(pal, "PNG", transparency=0))
    wide = Image.new("RGB", (40, 20), (0, 0, 255))
    wide.paste((255, 0, 0), (0, 0, 20, 20))   # stored: red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 6                           # display rotated 90 degrees clockwise
    write(root / "conv" / "rotated.jpg", encode(wide, "JPEG", exif=exif, quality=95))
    # links: a loop, a link out of the folder, a folder link back up (never walked)
    (root / "links").mkdir()
    os.symlink("loop-b.jpg", root / "links" / "loop-a.jpg")
    os.symlink("loop-a.jpg", root / "links" / "loop-b.jpg")
    outside = write(tmp_path / "secret.png", encode(noise(seed=5), "PNG"))
    os.symlink(outside, root / "links" / "escape.png")
    os.symlink("..", root / "links" / "up")
    write(root / ".store" / "x.png", encode(noise(seed=7), "PNG"))  # hidden folder: not walked itself
    os.symlink("../.store/x.png", root / "links" / "inside.png")     # a link inside the root: read
    # a file name that is not UTF-8 (Latin-1 e-acute)
    with open(os.path.join(os.fsencode(root / "ok"), b"caf\xe9.png"), "wb") as f:
        f.write(encode(noise(seed=6), "PNG"))
    return root


EXPECTED_SKIPS = {
    "bad/bomb.png": "too_large", "bad/one-pixel.png": "too_small", "bad/text.jpg": "not_image",
    "bad/truncated.jpg": "corrupt", "bad/zero.jpg": "empty", "links/escape.png": "outside_root",
    "links/loop-a.jpg": "unreadable", "links/loop-b.jpg": "unreadable",
    "links/up": "symlinked_folder", "ok/good2.png": "duplicate_image",
}


def test_each_bad_input_is_skipped_with_its_reason_and_counts_add_up(bad_folder):
    src = FolderSource(bad_folder)
    rows = {r["image_id"]: r for r in src}
    assert {i: r.split(":")[0] for i, r in src.skipped} == EXPECTED_SKIPS
    assert sorted(rows) == ["conv/cmyk.jpg", "conv/gray16.png", "conv/palette.png", "conv/rgb16.png",
                            "conv/rgba.png", "conv/rotated.jpg", "links/inside.png", "ok/caf\\xe9.png",
                            "ok/good.png"]
    assert src.seen == len(rows) + len(src.skipped) == 19
    reasons = dict(src.skipped)
    assert "10000000000 pixels" in reasons["bad/bomb.png"] and "1x1" in reasons["bad/one-pixel.png"]
    assert "'ok/good2.png'" not in reasons["ok/good2.png"] and "'ok/good.png'" in reasons["ok/good2.png"]
    assert "secret.png" in reasons["links/escape.png"]


def pixel(row, xy=(0, 0)):
    return decode_image(row["image"]).getpixel(xy)


def test_convertible_images_become_upright_8bit_rgb(bad_folder):
    src = FolderSource(bad_folder)
    rows = {r["image_id"]: r for r in src}
    converted = dict(src.converted)
    assert sorted(converted) == ["conv/cmyk.jpg", "conv/gray16.png", "conv/palette.png", "conv/rgba.png",
                                 "conv/rotated.jpg"]
    for i in converted:  # stored as RGB PNG: any reader (datasets, DuckDB + Pillow) gets the same pixels
        im = Image.open(io.BytesIO(rows[i]["image"]["bytes"]))
        assert (im.format, im.mode) == ("PNG", "RGB")
    assert np.allclose(pixel(rows["conv/cmyk.jpg"]), (255, 0, 0), atol=3)
    assert pixel(rows["conv/gray16.png"]) == (156, 156, 156)       # 40000 / 257, not clipped to 255
    assert "mode I;16" in converted["conv/gray16.png"]
    assert pixel(rows["conv/rgb16.png"]) == (255, 128, 0)          # Pillow keeps the high bytes
    assert pixel(rows["conv/rgba.png"], (0, 0)) == (255, 255, 255)  # transparent: white
    assert pixel(rows["conv/rgba.png"], (20, 0)) == (255, 127, 127)  # half red over white
    assert pixel(rows["conv/palette.png"], (0, 0)) == (255, 255, 255)
    assert pixel(rows["conv/palette.png"], (20, 0)) == (0, 0, 255)
    rot = decode_image(rows["conv/rotated.jpg"]["image"])
    assert rot.size == (20, 40) and "EXIF orientation 6" in converted["conv/rotated.jpg"]
    assert np.allclose(rot.getpixel((10, 5)), (255, 0, 0), atol=8)   # red (stored left) is now on top
    assert np.allclose(rot.getpixel((10, 35)), (0, 0, 255), atol=8)
    # the path-only route (shards.embed_images: false) decodes the original file to the same pixels
    orig = {"bytes": None, "path": str(bad_folder / "conv" / "rotated.jpg")}
    assert np.array_equal(np.asarray(decode_image(orig)), np.asarray(rot))


def test_non_utf8_file_name_keeps_the_image_with_an_escaped_id(bad_folder):
    rows = {r["image_id"]: r for r in FolderSource(bad_folder)}
    row = rows["ok/caf\\xe9.png"]
    assert row["image"]["path"] is None and row["image"]["bytes"]   # the bytes travel; the path could not
    assert row["label"] == "ok"


def test_min_side_option(bad_folder):
    src = make_source(SourceConfig(kind="folder", path=bad_folder, options={"min_side": 1}))
    ids = {r["image_id"] for r in src}
    assert "bad/one-pixel.png" in ids and "bad/one-pixel.png" not in dict(src.skipped)


@pytest.fixture
def odd_folder(tmp_path, monkeypatch):
    """Inputs that are no plain one-image files: a FIFO, a socket, a folder named like an image,
    multi-frame TIFF and GIF."""
    root = tmp_path / "odd"
    write(root / "x.png" / "inner.png", encode(noise(seed=11), "PNG"))   # a folder named x.png: walked
    os.mkfifo(root / "pipe.jpg")                                          # reading it would block forever
    monkeypatch.chdir(root)  # a relative socket path: AF_UNIX paths are limited to ~108 bytes
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind("sock.png")
    pages = [noise(seed=20 + i) for i in range(3)]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    write(root / "pages.tif", buf.getvalue())
    frames = [Image.new("RGB", (24, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255), (9, 9, 9))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    write(root / "anim.gif", buf.getvalue())
    yield root
    sock.close()


def _no_hang(seconds: int):
    def fail(*_):
        raise TimeoutError(f"the source blocked for {seconds} s (a FIFO read?)")
    signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)


def test_only_regular_files_are_read_and_multi_frame_images_keep_their_first_frame(odd_folder):
    _no_hang(30)
    try:
        src = FolderSource(odd_folder)
        rows = {r["image_id"]: r for r in src}
    finally:
        signal.alarm(0)
    skipped = dict(src.skipped)
    assert {i: r.split(":")[0] for i, r in skipped.items()} == {
        "pipe.jpg": "not_regular", "sock.png": "not_regular", "x.png": "not_regular"}
    assert "FIFO" in skipped["pipe.jpg"] and "socket" in skipped["sock.png"] and "directory" in skipped["x.png"]
    assert sorted(rows) == ["anim.gif", "pages.tif", "x.png/inner.png"]
    assert src.seen == len(rows) + len(src.skipped) == 6
    converted = dict(src.converted)
    assert converted["pages.tif"].startswith("multi-frame: first of 3 frames kept")
    assert converted["anim.gif"].startswith("multi-frame: first of 4 frames kept")
    tif = decode_image(rows["pages.tif"]["image"])
    assert np.array_equal(np.asarray(tif), np.asarray(noise(seed=20)))   # page 1, lossless
    assert Image.open(io.BytesIO(rows["pages.tif"]["image"]["bytes"])).format == "PNG"   # one frame stored
    assert np.allclose(pixel(rows["anim.gif"]), (255, 0, 0), atol=8)
    # the path-only route decodes the original file's first frame to the same pixels
    assert np.array_equal(np.asarray(decode_image({"bytes": None, "path": str(odd_folder / "pages.tif")})),
                          np.asarray(tif))


def test_devices_are_named_not_read():
    assert "character device" in not_regular(stat.S_IFCHR) and "block device" in not_regular(stat.S_IFBLK)
    assert not_regular(stat.S_IFREG) is None


def test_run_manifest_lists_what_was_converted_and_how(tmp_path, odd_folder):
    from pipeline.job.generate import generate

    manifest = generate(small_run(tmp_path, odd_folder), executor="local", progress=False)
    pool = manifest["stage_counts"]["pool"]
    assert (pool["seen"], pool["kept"], pool["skipped"], pool["converted"]) == (6, 3, 3, 2)
    assert sorted(pool["converted_inputs"]) == ["anim.gif", "pages.tif"]
    assert pool["converted_inputs"]["pages.tif"].startswith("multi-frame: first of 3 frames kept")


# -- annotation files, pools, configs ----------------------------------------------------------
def test_cirr_records_with_missing_keys_are_skipped_with_the_key(tmp_path):
    names = ["train-1-0-img0", "train-1-0-img1"]
    for i, n in enumerate(names):
        write(tmp_path / "train" / f"{n}.png", encode(noise(seed=10 + i), "PNG"))
    caps = [{"pairid": 1, "reference": names[0], "target_hard": names[1], "caption": "ok"},
            {"pairid": 2, "target_hard": names[1], "caption": "no reference"},
            {"pairid": 3, "reference": names[1], "target_hard": names[0]},
            "not even a record"]
    write(tmp_path / "captions" / "cap.rc2.train.json", json.dumps(caps).encode())
    write(tmp_path / "image_splits" / "split.rc2.train.json",
          json.dumps({n: f"./train/{n}.png" for n in names}).encode())
    src = CirrSource(tmp_path)
    assert [r["image_id"] for r in src] == names
    assert [(t["reference_id"], t["modification_text"]) for t in src.triplets()] == [(names[0], "ok")]
    assert dict(src.skipped_triplets) == {
        "cap.rc2.train.json[1]": "missing_key: record 1 of cap.rc2.train.json has no 'reference'",
        "cap.rc2.train.json[2]": "missing_key: record 2 of cap.rc2.train.json has no 'caption'",
        "cap.rc2.train.json[3]": "missing_key: record 3 of cap.rc2.train.json has no 'reference'"}
    write(tmp_path / "captions" / "cap.rc2.val.json", b'{"reference": "x"}')
    write(tmp_path / "image_splits" / "split.rc2.val.json", b"{}")
    with pytest.raises(ValueError, match=r"cap.rc2.val.json must hold a JSON list, got dict"):
        CirrSource(tmp_path, split="val")


def small_run(tmp_path, source_path, **extra):
    return parse_config({"name": "bad-inputs", "out_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"),
                         "source": {"kind": "folder", "path": str(source_path)},
                         "mining": {"strategies": ["label"], "k": 2, "near_dup": 1.0},  # no CLIP needed
                         "shards": {"rows_per_unit": 8}, "runtime": {"progress": False},
                         "generator": {"kind": "annotator"}, "negatives": {"enabled": False},
                         "filters": {"enabled": False}, **extra})


def test_run_over_bad_folder_records_pool_counts_in_the_manifest(tmp_path, bad_folder):
    from pipeline.job.generate import generate

    manifest = generate(small_run(tmp_path, bad_folder), executor="local", progress=False)
    pool = manifest["stage_counts"]["pool"]
    assert (pool["seen"], pool["kept"], pool["skipped"]) == (19, 9, 10)
    assert pool["seen"] == pool["kept"] + pool["skipped"]
    assert {e.split(":")[0] for e in pool["skipped_examples"]} == set(EXPECTED_SKIPS)
    rows = manifest["rows"]
    assert rows["in"] == rows["kept"] + rows["rejected"] == manifest["stage_counts"]["mining"]["pairs"] > 0
    # folder images have no scene graph: the ground-truth annotator rejects each pair, with that reason
    assert manifest["reject_reasons"] == {"annotator:no_scene_graph": rows["in"]}
    assert manifest["stages"] == ["annotator"] and manifest["stage_counts"]["annotator"] == {
        "in": rows["in"], "out": 0, "rejected": rows["in"], "reasons": {"no_scene_graph": rows["in"]}}


def test_empty_pool_is_a_clear_error(tmp_path):
    from pipeline.job.generate import generate

    empty = tmp_path / "empty"
    write(empty / "only-text.jpg", b"not an image")
    with pytest.raises(ValueError, match=r"the image pool is empty \(source.kind='folder', 1 inputs skipped\)"):
        generate(small_run(tmp_path, empty), executor="local", progress=False)


def test_config_naming_a_missing_checkpoint_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        small_run(tmp_path, tmp_path, embedder={"checkpoint": str(tmp_path / "no-such-clip")})
    msg = str(err.value)
    assert "\n" not in msg and "embedder.checkpoint" in msg and "no-such-clip" in msg and "folder not found" in msg
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04not loaded")
    with pytest.raises(ConfigError, match=r"embedder.checkpoint.*only pickle weights \(pytorch_model.bin\)"):
        small_run(tmp_path, tmp_path, embedder={"checkpoint": str(tmp_path / "pickled")})


def test_uncached_hub_checkpoint_offline_is_a_one_line_error(tmp_path, monkeypatch):
    from pipeline.checkpoints import CheckpointError
    from pipeline.embedder import ClipEmbedder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    cfg = small_run(tmp_path, tmp_path, embedder={"checkpoint": "someorg/clip-that-is-not-here"}).embedder
    with pytest.raises(CheckpointError) as err:
        ClipEmbedder.from_config(cfg)
    assert "\n" not in str(err.value) and "embedder.checkpoint='someorg/clip-that-is-not-here'" in str(err.value)


def test_config_naming_a_missing_generator_checkpoint_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse_config({"generator": {"kind": "mtst", "mtst": {"model": {"pretrained": str(tmp_path / "no-mtst")}}}})
    msg = str(err.value)
    assert "\n" not in msg and "generator.mtst.model.pretrained" in msg and "no-mtst" in msg and "not found" in msg
