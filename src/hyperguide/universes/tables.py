"""A universe's own feature tables seen as its encoders: how `hyperguide tasks` reads a universe without encoders
(`synthetic`, `synthetic-concepts`, `metavqa-standin`), whose questions and images are only those it holds."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from hyperguide.data.features import FeatureTable
from hyperguide.data.tasks import Universe
from hyperguide.errors import HyperguideError


class TableEncoders:
    """A universe without encoders (`synthetic`) seen through its own feature tables: texts must be ones it holds
    features for, images are its image ids, and an answer's default prompt is its own task's prompt for it (for a
    question of the universe), else the answer itself."""

    def __init__(self, universe: Universe, reason: str) -> None:
        if universe.text_features is None or universe.image_features is None:
            raise HyperguideError(f"universe {universe.name!r} has neither encoders ({reason}) nor features")
        self.universe = universe
        self.texts_table: FeatureTable = universe.text_features
        self.images_table: FeatureTable = universe.image_features
        self.reason = reason
        self.known = {t.question: dict(zip(t.answers, t.prompts, strict=True)) for t in universe.tasks}

    def prompt(self, question: str, answer: str) -> str:
        return self.known.get(question, {}).get(answer, answer)

    def texts(self, texts: list[str]) -> torch.Tensor:
        missing = [t for t in texts if t not in self.texts_table]
        if missing:
            raise HyperguideError(
                f"universe {self.universe.name!r} has no features for the text {missing[0]!r} (it has no encoders: "
                "only its own questions and answer prompts can be used)"
            )
        return self.texts_table.get(texts)

    def question_tokens(self, questions: list[str]) -> list[torch.Tensor]:
        tokens = self.universe.question_tokens
        return [tokens.get(q) if tokens is not None and q in tokens else self.texts([q]) for q in questions]

    def images(self, paths: Sequence[str | Path]) -> torch.Tensor:
        return self.images_table.get([str(p) for p in paths])

    def has_image(self, key: str) -> bool:
        return key in self.images_table
