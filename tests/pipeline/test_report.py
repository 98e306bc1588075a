"""The quality report: an HTML page with a funnel of counts per stage, reasons, score histograms and sample grids."""
from pipeline.report import write_report
from pipeline.shards import ShardWriter, finalize
from tests.pipeline.rows import png, row


def make_dataset(root, n=12):
    w = ShardWriter(root, stages=("annotator", "sanity"))
    w.expect(0, n)
    rows = []
    for i in range(n):
        r = row(0, i, rejected=i % 4 == 0)
        r["neg_text_aligned_image"] = {"bytes": png((0, 200, 0)), "path": None}
        r["neg_image_aligned_image"] = {"bytes": png((0, 0, 200)), "path": None}
        r["neg_text_aligned_source"] = r["neg_image_aligned_source"] = "mined"
        r["scores"] = {"roundtrip": i / n, "clip_direction": 0.1 * i, "text_sanity": 1.0}
        rows.append(r)
    w.add(rows)
    return finalize(root, {}, "h", units_total=1,
                    stage_counts={"pool": {"seen": 20, "kept": 18, "skipped": 2}, "mining": {"pairs": n}})


def test_report_has_counts_reasons_histograms_and_samples(tmp_path):
    manifest = make_dataset(tmp_path)
    index = write_report(tmp_path)
    assert index == tmp_path / "report" / "index.html"
    page = index.read_text()
    for png_name in ("funnel.png", "reject_reasons.png", "score_roundtrip.png", "score_clip_direction.png",
                     "samples_kept.png", "samples_rejected.png"):
        assert (tmp_path / "report" / png_name).stat().st_size > 1000
        assert f'src="{png_name}"' in page
    assert not (tmp_path / "report" / "score_duplicate.png").exists()  # no row has that score
    assert "sanity:empty_text" in page and f"<td>kept</td><td>{manifest['rows']['kept']}</td>" in page
    # the funnel's table: pool images, mined pairs, then rows through each stage of the chain
    assert "<td>pool</td><td>20</td><td>18</td><td>2</td>" in page and "<td>mining</td><td></td><td>12</td>" in page
    assert "<td>annotator</td><td>12</td><td>12</td><td>0</td>" in page
    assert "<td>sanity</td><td>12</td><td>9</td><td>3</td><td>empty_text 3</td>" in page


def test_report_escapes_text_and_handles_no_rejections(tmp_path):
    w = ShardWriter(tmp_path)
    w.expect(0, 1)
    r = row(0, 0)
    w.add([r])
    finalize(tmp_path, {}, "h", units_total=1)
    page = write_report(tmp_path).read_text()
    assert "samples_rejected.png" not in page and "<h2>Samples: rejected</h2><p>none</p>" in page


def test_sample_figures_show_thumbnails_a_person_can_see_with_little_white_space(tmp_path):
    import numpy as np
    from PIL import Image

    from pipeline.inspect_dataset import sample_grid

    make_dataset(tmp_path)  # 12 rows: 9 kept, 3 rejected; the text-aligned negatives are pure green
    write_report(tmp_path)
    sample_grid(tmp_path, tmp_path / "report" / "samples.png", n=8)
    for name, n in (("samples.png", 8), ("samples_kept.png", 8), ("samples_rejected.png", 3)):
        img = np.asarray(Image.open(tmp_path / "report" / name).convert("RGB"))
        green = (img == (0, 200, 0)).all(axis=-1)
        cols, rows = np.flatnonzero(green.any(axis=0)), np.flatnonzero(green.any(axis=1))
        assert cols.max() - cols.min() + 1 >= 128, name  # one thumbnail's width
        assert len(rows) >= 128 * n, name  # n thumbnails, each at least 128 px high
        assert img.shape[0] <= 40 + n * 170, f"{name}: {img.shape[0]} px high for {n} short rows"
