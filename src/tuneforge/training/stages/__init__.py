"""Training stages: each adds only what differs from the shared path in ``training/runner.py``.

The registry is built from the stage table in ``config/catalog.py``: a new stage is its module here plus
one row there.
"""

from __future__ import annotations

from tuneforge.config.catalog import STAGE_TABLE, load_impl
from tuneforge.training.stages.base import PretrainStage, Stage, StageInputs, TrlStage
from tuneforge.utils.names import Registry

STAGES: Registry[Stage] = Registry("training stage")
for _spec in STAGE_TABLE:
    STAGES.register(_spec.name, load_impl(_spec.impl))

__all__ = ["STAGES", "PretrainStage", "Stage", "StageInputs", "TrlStage"]
