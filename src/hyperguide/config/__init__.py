"""Configuration: the typed sections of a run (`sections`), the machinery that reads, overrides and lists them
(`typed`), and the named presets (`presets`)."""

from hyperguide.config.device import check_device
from hyperguide.config.presets import DEFAULT_PRESET, QUICK_PRESET, preset_names, preset_path, resolve_config
from hyperguide.config.sections import (
    CollectConfig,
    EvalConfig,
    HVAEConfig,
    HyperCLIPConfig,
    HyperLDMConfig,
    InnerLoop,
    MethodConfig,
    PromptStyle,
    QuestionMode,
    RunConfig,
    SplitKind,
    TrainConfig,
)
from hyperguide.config.typed import (
    apply_overrides,
    from_dict,
    knob,
    knobs,
    merge,
    render,
    require,
    to_dict,
    training_keys,
    training_view,
)

__all__ = [
    "DEFAULT_PRESET",
    "QUICK_PRESET",
    "CollectConfig",
    "EvalConfig",
    "HVAEConfig",
    "HyperCLIPConfig",
    "HyperLDMConfig",
    "InnerLoop",
    "MethodConfig",
    "PromptStyle",
    "QuestionMode",
    "RunConfig",
    "SplitKind",
    "TrainConfig",
    "apply_overrides",
    "check_device",
    "from_dict",
    "knob",
    "knobs",
    "merge",
    "preset_names",
    "preset_path",
    "render",
    "require",
    "resolve_config",
    "to_dict",
    "training_keys",
    "training_view",
]
