"""ragtune: documents in, a judged and registered LoRA adapter out.

The package reads top-down: ``ragtune.cli`` drives the KFP graph in ``pipelines/``, whose thin
components in ``components/`` call the stage packages here (``parse``, ``index``, ``synth``,
``train``, ``evaluate``, ``registry``), which rest on the small ``core``.
"""

__version__ = "0.1.0"
