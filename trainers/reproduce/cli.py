"""The reproduction table on ShapesWorld, from one command: ``python -m trainers.reproduce``.

``--config`` / ``--set`` give ReproduceConfig keys; ``--doc`` writes the table into a markdown file.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline.config_base import parse_overrides
from trainers.reproduce.claims import claims_markdown
from trainers.reproduce.config import load_reproduce_config
from trainers.reproduce.run import reproduce
from trainers.reproduce.table import markdown_table, write_doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainers.reproduce", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML with ReproduceConfig keys (default: the built-in table config)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key, e.g. --set workers=1 --set pretrain.steps=50 (value parsed as YAML)")
    p.add_argument("--doc", default=None, help="write the table into this markdown file (e.g. docs/reproduction.md)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        overrides = parse_overrides(args.set, example="workers=1")
    except ValueError as err:
        p.error(str(err))
    try:
        cfg = load_reproduce_config(args.config, overrides)
    except (FileNotFoundError, ValueError) as err:
        p.error(str(err))
    results = reproduce(cfg)
    print(markdown_table(results["summary"]))
    print("\n" + claims_markdown(results["claims"]))
    print(f"\n{results['seconds'] / 60:.1f} min; results in {cfg.out_dir / 'results.json'}")
    if args.doc:
        command = "python -m trainers.reproduce " + " ".join(sys.argv[1:] if argv is None else argv)
        print("wrote", write_doc(results, Path(args.doc), command.strip()))
    return 0
