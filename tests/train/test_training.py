"""Real LoRA training of the packaged SmolLM2 on the tiny dataset (CPU, a few steps, 128 tokens).

cpu_threads=1: on a small CPU shared with other processes one torch thread is several times faster.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ragtune.core.modelload import load_tuned_model, read_adapter_meta
from ragtune.registry.stage import read_train_report, train_metrics
from ragtune.train import TrainReport, run_train
from ragtune.train.lora import probe_logits
from ragtune.train.runner import PROBE_FILE
from tests.train.helpers import small_config

pytestmark = pytest.mark.slow

PROBE = "<|im_start|>user\nWhat is lithium?<|im_end|>\n<|im_start|>assistant\nAccording to"


def test_deepspeed_zero2_on_cpu_learns_and_saves_an_adapter_that_reloads_exactly(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "train"
    config = small_config(deepspeed="zero2", max_steps=6, cpu_threads=1)
    report = run_train(config, tiny_dataset, out, probe=PROBE)

    assert report.deepspeed == "zero2" and report.device.startswith("cpu")
    assert report.global_step == report.steps_this_run == 6 and report.resumed_from_step is None
    assert (report.train_examples, report.eval_examples, report.skipped) == (8, 4, [])
    losses = [point.loss for point in report.loss_curve if point.loss is not None]
    assert len(losses) == 6  # logging_steps=1
    assert losses[-1] < losses[0]
    assert report.eval_loss_before is not None and report.eval_loss_after is not None
    assert report.eval_loss_after < report.eval_loss_before
    assert report.tokens_seen > 0 and report.tokens_per_second and report.peak_rss_mb > 0
    assert TrainReport.model_validate_json((out / "metrics.json").read_text()) == report
    logged = train_metrics(read_train_report(out))  # the registry reads what the stage wrote, typed
    assert [step for step, _ in logged["loss"]] == [p.step for p in report.loss_curve if p.loss is not None]
    assert logged["global_step"] == 6 and "eval_loss" in logged

    adapter = out / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    assert (adapter / "tokenizer_config.json").is_file()
    meta = read_adapter_meta(adapter)
    assert (meta.base_model, meta.lora_r, meta.global_step) == ("smollm2", 8, 6)
    assert meta.dataset_sha256 == report.dataset_sha256

    # The logits the trained model gave in the DeepSpeed process, before anything was saved ...
    trained = torch.load(out / PROBE_FILE)
    model, tokenizer = load_tuned_model(adapter)
    reloaded = probe_logits(model, tokenizer, PROBE)
    assert torch.equal(reloaded, trained)  # ... are what the saved adapter gives, bit for bit
    with model.disable_adapter():
        base = probe_logits(model, tokenizer, PROBE)
    assert not torch.allclose(base, trained, atol=1e-3)  # and the adapter does change the model


def test_a_stopped_run_resumes_from_its_checkpoint(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "train"
    first = run_train(small_config(max_steps=2, save_steps=2, cpu_threads=1), tiny_dataset, out)
    assert first.deepspeed == "off"  # auto on CPU
    assert first.global_step == 2 and (out / "checkpoints" / "checkpoint-2").is_dir()

    # The same out_dir again, now aiming at 4 steps (as a crashed run's restart would).
    config = small_config(max_steps=4, save_steps=2, cpu_threads=1, merge_adapter=True)
    second = run_train(config, tiny_dataset, out, probe=PROBE)
    assert second.resumed_from_step == 2
    assert second.steps_this_run == 2 and second.global_step == 4
    assert [p.step for p in second.loss_curve if p.loss is not None] == [1, 2, 3, 4]
    assert second.loss_curve[:3] == first.loss_curve[:3]  # steps 0-2 come from the first run's checkpoint
    assert second.eval_loss_before == first.eval_loss_before
    assert second.tokens_seen > first.tokens_seen
    assert read_adapter_meta(out / "adapter").global_step == 4
    state = json.loads((out / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4

    # merge_adapter: a plain transformers model equal to base + adapter (up to float rounding).
    from transformers import AutoModelForCausalLM

    assert second.merged_dir == str(out / "merged")
    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    _, tokenizer = load_tuned_model(out / "adapter")
    trained = torch.load(out / PROBE_FILE)
    assert torch.allclose(probe_logits(merged, tokenizer, PROBE), trained, atol=1e-3)
