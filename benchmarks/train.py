"""Train-stage throughput and memory against a bare peft + Trainer loop.

* ``train_ratio`` — tokens/s of ``ragtune.train.train`` (deepspeed off, as on CPU by default: chat
  template, loss masked to the answers, dynamic padding, checkpointing, eval at start and end)
  divided by tokens/s of a bare loop on the same model, data and steps: ``load_causal_lm`` +
  ``get_peft_model`` (same LoRA) + ``Trainer`` over the chat-template token ids with
  ``DataCollatorForSeq2Seq``, no eval and no saving. Both rates are non-padding input tokens per
  second of optimizer-step time, measured by the same Trainer callback
  (``ragtune.train.runner.step_clock``), the first step left out (lazy initialisation).
* ``packed_ratio`` — effective (non-padding) tokens/s of the stage with packed batches (the
  default: one padding-free row per batch, position ids restarting per example) over the same stage
  with ``train.packing`` off (padded to each batch's longest), same data, seed and steps, in the
  same run. Goal ≥ 1.5. ``loss_max_diff`` — the largest difference between the two runs' training
  losses at the same step (the same examples make each step, so they should agree within float
  noise); ``padding_share`` — the share of padding tokens the padded run feeds the model (batches
  in file order; the Trainer's shuffle differs but not by much).
* The table also shows the stage under DeepSpeed ZeRO-2 (``DS_ACCELERATOR=cpu``), the Trainer's
  whole train() wall time, and peak RSS; ``peak_rss_mb`` is the stage's (deepspeed off).

Every variant runs in a fresh process (so RSS is its own), in alternation ``--repeat`` times; the
median counts. The data are instruction items made from the sample corpus's Markdown paragraphs.
Prints a table, then as its last line ``key=value`` pairs.

Usage::

    python benchmarks/train.py [--steps 10] [--batch 4] [--max-seq-len 256] [--threads 1] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would garble the table

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "examples" / "psychiatry" / "corpus" / "markdown"
VARIANTS = ("bare", "ours", "ours_padded", "ours_zero2")


def make_dataset(folder: Path, n_train: int = 36, n_eval: int = 8) -> Path:
    """Question/answer items from the Markdown paragraphs of the sample corpus."""
    from ragtune.core.artifacts import DatasetDir
    from ragtune.core.records import ContextChunk, InstructionItem, Provenance, sha256_hex

    items: list[InstructionItem] = []
    for path in sorted(CORPUS.glob("*.md")):
        heading = path.stem
        for block in path.read_text(encoding="utf-8").split("\n\n"):
            if block.startswith("#"):
                heading = block.lstrip("# ").strip()
            elif len(block) > 200 and not block.startswith(">"):
                chunk = ContextChunk(chunk_id=f"c{len(items)}", sha256=sha256_hex(block), text=block)
                question = f"What does the reference say about {heading.lower()}?"
                messages = [
                    {"role": "system", "content": "Answer from the reference text."},
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": block},
                ]
                items.append(
                    InstructionItem(
                        item_id=f"i{len(items)}",
                        category=heading,
                        question_type="summary",
                        question=question,
                        answer=block,
                        context=[chunk],
                        messages=messages,
                        provenance=Provenance(
                            doc_id=path.stem,
                            section_path=[heading],
                            source_chunk_id=chunk.chunk_id,
                            context_chunk_ids=[chunk.chunk_id],
                            generator_model="corpus",
                            question_template="bench@1",
                            answer_template="bench@1",
                        ),
                    )
                )
    if len(items) < n_train + n_eval:
        raise SystemExit(f"only {len(items)} paragraphs in {CORPUS}; need {n_train + n_eval}")
    DatasetDir(folder).write("train", items[:n_train])
    DatasetDir(folder).write("eval", items[n_train : n_train + n_eval])
    return folder


def run_ours(args: argparse.Namespace, deepspeed: str, packing: bool = True) -> dict[str, Any]:
    from ragtune.core.config import build_config
    from ragtune.train import run_train

    config = build_config(
        {
            "run": {"seed": 0},
            "train": {
                "max_steps": args.steps,
                "per_device_batch_size": args.batch,
                "max_seq_len": args.max_seq_len,
                "cpu_threads": args.threads,
                "deepspeed": deepspeed,
                "packing": packing,
                "logging_steps": 1,
                "eval_steps": 10_000,
                "save_steps": 10_000,
            },
        }
    )
    with tempfile.TemporaryDirectory() as out:
        report = run_train(config, args.dataset, Path(out))
    return {
        "seconds_per_step": report.seconds_per_step,
        "tokens_per_second": report.tokens_per_second,
        "train_runtime_s": report.train_runtime_s,
        "tokens": report.tokens_seen,
        "peak_rss_mb": report.peak_rss_mb,
        "losses": [point.loss for point in report.loss_curve if point.loss is not None],
    }


def padding_share_of(args: argparse.Namespace) -> float:
    """Share of padding among the tokens a padded run feeds the model (batches in file order)."""
    from transformers import AutoTokenizer

    from ragtune.core.models import resolve_causal_lm_path
    from ragtune.train.data import encode_items, padding_share, read_splits

    tokenizer = AutoTokenizer.from_pretrained(resolve_causal_lm_path("smollm2"))
    encoded = encode_items(tokenizer, read_splits(args.dataset).train, args.max_seq_len, "train")
    lengths = [len(example["input_ids"]) for example in encoded.examples]
    return padding_share(lengths, args.batch, packing=False)


def run_bare(args: argparse.Namespace) -> dict[str, Any]:
    import resource

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from ragtune.core.artifacts import DatasetDir
    from ragtune.core.models import load_causal_lm
    from ragtune.train.runner import StepTimes, step_clock

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out,
            seed=0,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch,
            learning_rate=2e-4,
            optim="adamw_torch",
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            include_num_input_tokens_seen="non_padding",
            dataloader_pin_memory=False,
        )
        base, tokenizer = load_causal_lm("smollm2")
        lora = LoraConfig(
            task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"]
        )
        model = get_peft_model(base, lora)
        features = []
        for line in DatasetDir(args.dataset).train_path.read_text(encoding="utf-8").splitlines():
            text = tokenizer.apply_chat_template(json.loads(line)["messages"], tokenize=False)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"][: args.max_seq_len]
            features.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(ids)})
        times = StepTimes()
        trainer = Trainer(
            model=model,
            args=targs,
            train_dataset=features,
            data_collator=DataCollatorForSeq2Seq(tokenizer, padding="longest"),
            callbacks=[step_clock(times)],
        )
        result = trainer.train()
    seconds_per_step, tokens_per_second = times.throughput()
    return {
        "seconds_per_step": seconds_per_step,
        "tokens_per_second": tokens_per_second,
        "train_runtime_s": result.metrics["train_runtime"],
        "tokens": trainer.state.num_input_tokens_seen,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_variant(args: argparse.Namespace) -> None:
    if args.variant == "bare":
        result = run_bare(args)
    else:
        deepspeed = "zero2" if args.variant == "ours_zero2" else "off"
        result = run_ours(args, deepspeed, packing=args.variant != "ours_padded")
    Path(args.result).write_text(json.dumps(result), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=256)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared CPU)"
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--dataset", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant:
        run_variant(args)
        return 0

    results: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as work:
        dataset = make_dataset(Path(work) / "dataset")
        for _ in range(args.repeat):
            for name in VARIANTS:  # alternating, so drift in machine load hits all alike
                result_file = Path(work) / f"{name}.json"
                command = [
                    sys.executable,
                    __file__,
                    "--variant",
                    name,
                    "--dataset",
                    str(dataset),
                    "--result",
                    str(result_file),
                ]
                command += [
                    "--steps",
                    str(args.steps),
                    "--batch",
                    str(args.batch),
                    "--max-seq-len",
                    str(args.max_seq_len),
                    "--threads",
                    str(args.threads),
                ]
                started = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    print(done.stdout[-3000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
                    raise SystemExit(f"variant {name} failed (exit {done.returncode})")
                result = json.loads(result_file.read_text(encoding="utf-8"))
                result["process_s"] = time.perf_counter() - started
                results[name].append(result)

        args.dataset = dataset
        share = padding_share_of(args)

    def median(name: str, key: str) -> float:
        return statistics.median(float(run[key]) for run in results[name])

    print(
        f"SmolLM2-135M LoRA r=8 q/v, CPU, {args.threads} thread(s), batch {args.batch}, "
        f"max_seq_len {args.max_seq_len}, {args.steps} steps, median of {args.repeat}"
    )
    header = f"{'variant':<12}{'s/step':>9}{'tokens/s':>10}{'train() s':>11}{'process s':>11}{'tokens':>8}{'peak RSS MB':>13}"
    print(header)
    print("-" * len(header))
    for name in VARIANTS:
        print(
            f"{name:<12}{median(name, 'seconds_per_step'):>9.2f}{median(name, 'tokens_per_second'):>10.1f}"
            f"{median(name, 'train_runtime_s'):>11.1f}{median(name, 'process_s'):>11.1f}"
            f"{median(name, 'tokens'):>8.0f}{median(name, 'peak_rss_mb'):>13.0f}"
        )
    ratio = median("ours", "tokens_per_second") / median("bare", "tokens_per_second")
    zero2 = median("ours_zero2", "tokens_per_second") / median("bare", "tokens_per_second")
    packed = median("ours", "tokens_per_second") / median("ours_padded", "tokens_per_second")
    loss_diff = max(
        abs(a - b)
        for packed_run, padded_run in zip(results["ours"], results["ours_padded"], strict=True)
        for a, b in zip(packed_run["losses"], padded_run["losses"], strict=True)
    )
    print(
        f"(train() s includes the stage's eval at start and end and its final checkpoint; zero2/bare={zero2:.2f})"
    )
    print(
        f"packed (ours) vs padded (ours_padded): {packed:.2f}x effective tokens/s (goal >= 1.5); the padded "
        f"run feeds {share:.1%} padding; training losses differ by at most {loss_diff:.4f} per step"
    )
    print(
        f"train_ratio={ratio:.2f} packed_ratio={packed:.2f} padding_share={share:.3f} "
        f"loss_max_diff={loss_diff:.4f} peak_rss_mb={median('ours', 'peak_rss_mb'):.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
