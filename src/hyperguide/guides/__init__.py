"""Guidance models, each declared once (`GuideSpec`), and the built-in ones."""

from hyperguide.guides.builtin import BUILTIN_GUIDES, HYPERCLIP, HYPERLDM, REGRESSOR
from hyperguide.guides.spec import GUIDES, BuildContext, Diagnostic, GuideSpec, Measure

__all__ = [
    "BUILTIN_GUIDES",
    "GUIDES",
    "HYPERCLIP",
    "HYPERLDM",
    "REGRESSOR",
    "BuildContext",
    "Diagnostic",
    "GuideSpec",
    "Measure",
]
