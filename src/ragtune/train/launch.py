"""Entry point of each DeepSpeed launcher process: ``python -m ragtune.train.launch``.

The DeepSpeed launcher starts this module once per GPU with ``--local_rank=N`` (the Trainer reads
the rank from the environment the launcher sets). A :class:`RagtuneError` is written to
``<out>/train_error.txt`` so the stage that launched us can report it in one line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ragtune.core.config import config_from_json
from ragtune.core.errors import RagtuneError
from ragtune.train.distributed import ERROR_FILE
from ragtune.train.runner import run_training


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ragtune.train.launch", description=__doc__)
    parser.add_argument("--config-json", type=Path, required=True, help="RagtuneConfig as JSON (a file).")
    parser.add_argument("--dataset", type=Path, required=True, help="Folder with train.jsonl/eval.jsonl.")
    parser.add_argument("--out", type=Path, required=True, help="The stage's out_dir.")
    parser.add_argument("--stage", choices=["off", "zero2", "zero3"], required=True)
    parser.add_argument("--probe", default=None, help="Text whose logits rank 0 saves after training.")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=-1, help="Set by the launcher.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_json(args.config_json.read_text(encoding="utf-8"))
        run_training(config, args.dataset, args.out, args.stage, args.probe)
    except RagtuneError as err:
        (args.out / ERROR_FILE).write_text(str(err), encoding="utf-8")
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
