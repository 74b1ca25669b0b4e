"""Training stages: each adds only what differs from the shared path in ``training/runner.py``."""

from __future__ import annotations

from tuneforge.training.stages.base import PretrainStage, Stage, StageInputs, TrlStage
from tuneforge.training.stages.grpo import GrpoStage
from tuneforge.training.stages.kto import KtoStage
from tuneforge.training.stages.ppo import PpoStage
from tuneforge.training.stages.preference import DpoStage, OrpoStage, SimpoStage
from tuneforge.training.stages.reward import RewardStage
from tuneforge.utils.names import Registry

STAGES: Registry[Stage] = Registry("training stage")
for _stage in (Stage(), PretrainStage(), RewardStage(), DpoStage(), SimpoStage(), OrpoStage(), KtoStage(),
               PpoStage(), GrpoStage()):
    STAGES.register(_stage.name, _stage)

__all__ = ["STAGES", "Stage", "StageInputs", "TrlStage"]
