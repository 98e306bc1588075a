"""The stage chain a run config asks for: order, GPU placement from the config, ids per model."""
from pipeline.job.chain import all_stage_specs, generator_name
from pipeline.job.config import parse_config


def names(specs):
    return [s.cls.name for s in specs]


def test_chain_order_is_texts_negatives_filters_with_duplicates_last():
    cfg = parse_config({})
    specs = all_stage_specs(cfg, "model-dir", "pool.parquet")
    assert names(specs)[:2] == ["mtst_text", "negatives"]
    assert names(specs)[-1] == "duplicates" and specs[-1].cls.driver
    off = parse_config({"negatives": {"enabled": False}, "filters": {"enabled": False}})
    assert names(all_stage_specs(off, "model-dir", None)) == ["mtst_text"]


def test_gpu_placement_and_actor_count_come_from_the_config_not_the_driver():
    cpu = all_stage_specs(parse_config({"generator": {"mtst": {"infer": {"device": "cpu"}}}}), "m", "p")
    assert cpu[0].num_gpus == 0.0 and cpu[0].concurrency is None
    gpu = all_stage_specs(parse_config({"generator": {"mtst": {"infer": {"device": "cuda"}}},
                                        "runtime": {"gpu_actors": 3}}), "m", "p")
    assert gpu[0].num_gpus == 1.0 and gpu[0].concurrency == 3
    assert all(s.concurrency is None for s in gpu[1:])  # CPU stages keep their declarations


def test_generator_ids_differ_per_model():
    a = parse_config({})
    b = parse_config({"generator": {"mtst": {"train": {"epochs": 2}}}})
    c = parse_config({"generator": {"kind": "annotator"}})
    ids = {generator_name(x) for x in (a, b, c)}
    assert len(ids) == 3 and "shapesworld-annotator" in ids
    # where the trained model is cached does not change the model
    d = parse_config({"cache_dir": "elsewhere", "generator": {"mtst": {"train": {"cache_dir": "x"}}}})
    assert generator_name(d) == generator_name(a) and d.config_hash() == a.config_hash()
