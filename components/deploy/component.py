"""KFP component: render the serving manifests of the version the register step just promoted."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def render_serving(config_json: str, decision: Input[Dataset], serving: Output[Dataset]) -> str:
    """Render the KServe serving object pinned to the registered version's adapter URI.

    Args:
        config_json: The resolved ragtune config as JSON (``serve.*``, ``registry.*``).
        decision: Output of the register component (decision.json names the version).
        serving: serving.yaml, kustomization.yaml and deploy.json: what to commit for Argo CD.

    Returns:
        The adapter URI the manifest pins.
    """
    from pathlib import Path

    from ragtune.core.config import config_from_json
    from ragtune.registry.stage import read_decision
    from ragtune.serve import render_deploy

    record = read_decision(Path(decision.path))
    report = render_deploy(config_from_json(config_json), Path(serving.path), version=record.version)
    return report.adapter_uri
