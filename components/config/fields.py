"""The pipeline parameters a person fills in the Kubeflow UI, and the config keys they set.

``resolve_config`` applies them on top of ``config_json``. They are strings that default to empty,
which keeps the config's value: a person who pastes a config and touches nothing else gets exactly
that config, and one who fills a field overrides just that key.
"""

CONFIG_PARAMETERS: dict[str, str] = {
    "corpus_uri": "corpus.uri",
    "base_model": "train.base_model",
    "questions_per_category": "synth.questions_per_category",
    "lora_r": "train.lora_r",
    "lora_alpha": "train.lora_alpha",
    "max_steps": "train.max_steps",
    "generator_base_url": "llm.generator.base_url",
    "generator_model": "llm.generator.model",
    "judge_base_url": "llm.judge.base_url",
    "judge_model": "llm.judge.model",
    "promotion_margin": "registry.promotion_margin",
}
