"""The training runner's stages: what a stage body is given (`context`), running one (`ensure`), and the bodies of
the HNet's chain (`chain`) and of the built-in guides (`guidance`). Which stages exist, what they need and how their
checkpoints are fingerprinted is declared in `hyperguide.trained.stage_table`."""

from hyperguide.run.stages.context import StageBody, StageContext, StageOutput
from hyperguide.run.stages.ensure import divergence_hint, ensure_stage, stage_body

__all__ = ["StageBody", "StageContext", "StageOutput", "divergence_hint", "ensure_stage", "stage_body"]
