"""The container images components run in on a cluster (ignored by the local runner).

Set at compile time through ``RAGTUNE_IMAGE`` / ``RAGTUNE_TRAIN_IMAGE`` so a team can point the
compiled pipeline at its own registry; the defaults are the tags ``docker/`` builds.
"""

from __future__ import annotations

import os

CPU_IMAGE = os.environ.get("RAGTUNE_IMAGE", "ghcr.io/ragtune/ragtune:0.1.0")
TRAIN_IMAGE = os.environ.get("RAGTUNE_TRAIN_IMAGE", "ghcr.io/ragtune/ragtune-train:0.1.0")
