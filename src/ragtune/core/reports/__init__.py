"""The typed reports that cross a stage boundary: one pydantic model per report file.

A stage writes its report through its artifact (:mod:`ragtune.core.artifacts`) and a later stage
reads it back with ``Artifact.read_report(Model)``. The models that more than their own stage read
live here, below the stages: :mod:`.synth` (``SynthReport``, what the registry logs and the
evidence summary prints from synthesis), :mod:`.train` (``TrainReport``, what the registry logs
from training) and :mod:`.evaluation` (``EvalMetrics``, what the registry's promotion gate decides on). Only data
lives here; the stages compute the numbers.
"""
