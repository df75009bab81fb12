"""KFP component: resolve the run's config once, from the YAML-derived JSON and the UI's fields."""

from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def resolve_config(
    config_json: str,
    corpus_uri: str,
    base_model: str,
    questions_per_category: str,
    lora_r: str,
    lora_alpha: str,
    max_steps: str,
    generator_base_url: str,
    generator_model: str,
    judge_base_url: str,
    judge_model: str,
    promotion_margin: str,
) -> str:
    """Validate the config with the parameters a person set in the Kubeflow UI applied on top.

    Every field below is a string in the UI: empty keeps the value in ``config_json``, anything
    else is validated as that config key (``"8"`` for an integer key is 8).

    Every later task reads this task's output, so a bad value fails the run here, once, with the
    dotted key named, instead of deep inside a GPU task. The pod's ``RAGTUNE_<SECTION>__<KEY>``
    variables (the ``ragtune-endpoints`` ConfigMap) apply before the UI's fields.

    Args:
        config_json: The ragtune config as JSON (``ragtune submit``/``run`` fill it from YAML).
        corpus_uri: corpus.uri, a folder or s3://bucket/prefix.
        base_model: train.base_model, the model to tune.
        questions_per_category: synth.questions_per_category, the paper's per-category quota.
        lora_r: train.lora_r.
        lora_alpha: train.lora_alpha.
        max_steps: train.max_steps (-1 = by epochs).
        generator_base_url: llm.generator.base_url (empty: the config's, unset = the local model).
        generator_model: llm.generator.model.
        judge_base_url: llm.judge.base_url (empty: the config's, unset = the weak local judge).
        judge_model: llm.judge.model.
        promotion_margin: registry.promotion_margin, the judge-score margin to become champion.

    Returns:
        The resolved config as JSON (no secrets: only the names of the env vars that hold them).
    """
    import os

    import ragtune  # noqa: F401  first: from an installed wheel, `components` imports through ragtune
    from components.config.fields import CONFIG_PARAMETERS
    from ragtune.core.config import config_from_json

    given = locals()
    overrides = {dotted: given[name] for name, dotted in CONFIG_PARAMETERS.items()}
    # The pod's RAGTUNE_* env (in-cluster endpoints) applies under the UI's fields.
    return config_from_json(config_json, overrides, environ=os.environ).to_json()
