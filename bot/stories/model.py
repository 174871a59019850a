"""The fitted story model: a logistic regression over signals.FEATURES giving P(same event), the
threshold it must clear, and when and on what it was fitted (story_model.json, shipped beside it).

Fitting is numpy only (iteratively reweighted least squares with an L2 penalty), so that
`newsalert stories fit` re-fits on a team's own labels on the machine the bot runs on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from bot.errors import StoryModelError
from bot.stories.signals import FEATURES

SHIPPED = "story_model.json"


@dataclass(frozen=True)
class StoryModel:
    weights: tuple[float, ...]  # one per FEATURES, in that order
    bias: float
    threshold: float  # P(same) at or above which an item joins a story
    fitted: str = ""  # ISO date
    figures: dict[str, Any] = field(default_factory=dict)  # what it was fitted on and scored
    features: tuple[str, ...] = FEATURES

    def __post_init__(self) -> None:
        if self.features != FEATURES or len(self.weights) != len(FEATURES):
            raise StoryModelError(
                f"story model: fitted for features {list(self.features)}, "
                f"this version computes {list(FEATURES)}"
            )

    @property
    def vector(self) -> np.ndarray:
        return np.asarray(self.weights)

    def logit(self, x: np.ndarray) -> float:
        return float(self.vector @ x + self.bias)

    def probability(self, x: np.ndarray) -> float:
        return _sigmoid(self.logit(x))

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(rows @ self.vector + self.bias)))

    @property
    def threshold_logit(self) -> float:
        return math.log(self.threshold / (1.0 - self.threshold))

    def parts(self, x: np.ndarray) -> dict[str, float]:
        """Each feature's share of the logit (weight x value): what `story ID --why` prints."""
        # As Python floats (the same IEEE products): numpy scalars cost most of a Match.
        return {name: round(w * v, 3) for name, w, v in zip(FEATURES, self.weights, x.tolist(), strict=True)}

    def to_json(self) -> str:
        return json.dumps(
            {
                "features": list(self.features),
                "weights": [round(w, 6) for w in self.weights],
                "bias": round(self.bias, 6),
                "threshold": round(self.threshold, 4),
                "fitted": self.fitted,
                "figures": self.figures,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str, where: str = SHIPPED) -> StoryModel:
        try:
            doc = json.loads(text)
            return cls(
                weights=tuple(float(w) for w in doc["weights"]),
                bias=float(doc["bias"]),
                threshold=float(doc["threshold"]),
                fitted=str(doc.get("fitted", "")),
                figures=dict(doc.get("figures", {})),
                features=tuple(doc["features"]),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise StoryModelError(f"{where}: not a story model ({e})") from None


def shipped() -> StoryModel:
    """The model fitted by bench/story_model.py on the labeled sets, shipped as package data."""
    text = resources.files("bot.stories").joinpath(SHIPPED).read_text(encoding="utf-8")
    return StoryModel.from_json(text)


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


L2 = 1.0  # ridge penalty on the weights (not the bias): a handful of weights, kept small


def fit(
    rows: np.ndarray, labels: np.ndarray, *, l2: float = L2, iterations: int = 50
) -> tuple[np.ndarray, float]:
    """(weights, bias) of an L2-penalised logistic regression, by iteratively reweighted least squares.

    The classes are weighted to count equally: most pairs in a window are different stories,
    and the threshold, not the prior, is what sets how cautious a merge is.
    """
    n, k = rows.shape
    x = np.hstack([rows, np.ones((n, 1))])
    positives = max(1, int(labels.sum()))
    negatives = max(1, n - positives)
    sample = np.where(labels > 0, n / (2 * positives), n / (2 * negatives))
    penalty = np.full(k + 1, l2)
    penalty[-1] = 0.0
    beta = np.zeros(k + 1)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        w = sample * np.clip(p * (1 - p), 1e-6, None)
        gradient = x.T @ (sample * (labels - p)) - penalty * beta
        hessian = (x * w[:, None]).T @ x + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    return beta[:-1], float(beta[-1])
