"""The pipeline parameters a person fills in the Kubeflow UI, and the config keys they set.

``resolve_config`` applies them; ``pipelines.parameters`` fills them from a loaded config, so a run
from the CLI does exactly what its YAML says while the UI shows the same fields. Empty strings
keep the config's value.
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
