"""Fit the story model and draw its precision/recall curve: `python bench/story_model.py`.

1. The embedding centre (bot/stories/embed_center.json): the mean vector of the fitting weeks'
   items of tests/data/stories/independent.toml and syndicated.toml.
2. The logistic regression and its threshold (bot/stories/fit.py) on the fitting weeks, its
   figures on the held-out weeks (every third ISO week), written to bot/stories/story_model.json.
3. docs/story-pr-curve.png: pairwise precision against recall of the held-out clustering as the
   threshold moves, with the chosen threshold marked (needs matplotlib: `pip install -e '.[bench]'`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.stories import fit, labeled  # noqa: E402
from bot.stories.decide import embedding_text  # noqa: E402
from bot.stories.embed import Embedder  # noqa: E402
from bot.stories.model import StoryModel  # noqa: E402
from bot.stories.signals import FEATURES  # noqa: E402

DATA = ROOT / "tests" / "data" / "stories"
SETS = [DATA / "independent.toml", DATA / "syndicated.toml"]
PACKAGE = ROOT / "bot" / "stories"
PLOT = ROOT / "docs" / "story-pr-curve.png"


def write_center(sets: dict[str, list[labeled.Labeled]]) -> None:
    rows = [r for rs in sets.values() for r in labeled.part(rs, held=False)]
    texts = [embedding_text((item := labeled.item_of(r)).title, item.text) for r in rows]
    center = Embedder().raw(texts).mean(axis=0)
    doc = {
        "about": f"mean unit vector of the headline + lead of {len(texts)} items: the fitting weeks of "
        "tests/data/stories/independent.toml and syndicated.toml (bench/story_model.py)",
        "center": [round(float(x), 6) for x in center],
    }
    (PACKAGE / "embed_center.json").write_text(json.dumps(doc) + "\n")


def curve(
    model: StoryModel, sets: dict[str, list[labeled.Labeled]], embed
) -> dict[str, list[tuple[float, float, float]]]:
    points: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sets}
    for threshold in fit.THRESHOLDS:
        trial = StoryModel(model.weights, model.bias, threshold)
        for name, scores in fit.evaluate(trial, sets, embed).items():
            points[name].append((threshold, scores.precision, scores.recall))
    return points


def plot(points: dict[str, list[tuple[float, float, float]]], model: StoryModel) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for name, pts in points.items():
        ax.plot([r for _, _, r in pts], [p for _, p, _ in pts], marker=".", label=f"{name} (held-out weeks)")
        chosen = min(pts, key=lambda t: abs(t[0] - model.threshold))
        ax.scatter([chosen[2]], [chosen[1]], s=80, facecolors="none", edgecolors="black", zorder=3)
    ax.axhline(0.95, color="grey", ls="--", lw=0.8)
    ax.axvline(0.80, color="grey", ls=":", lw=0.8)
    ax.set_xlabel("pairwise recall")
    ax.set_ylabel("pairwise precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0.5, 1.01)
    ax.set_title(
        f"Story model, threshold swept (circle: chosen P(same) >= {model.threshold:.3f})", fontsize=9
    )
    ax.legend(loc="lower left", fontsize=8)
    PLOT.parent.mkdir(exist_ok=True)
    fig.tight_layout()
    fig.savefig(PLOT)


def main() -> None:
    sets = fit.read_sets(SETS)
    write_center(sets)
    embedder = Embedder()  # with the centre just written
    fitted = fit.fit_model(sets, embedder.embed)
    model = fitted.model
    (PACKAGE / "story_model.json").write_text(model.to_json() + "\n")
    print("weights:", ", ".join(f"{n} {w:+.2f}" for n, w in zip(FEATURES, model.weights, strict=True)))
    print(f"bias {model.bias:+.2f}, threshold P(same) >= {model.threshold:.3f}")
    for name, scores in fitted.train.items():
        print(f"  fitting weeks {name}: {scores.line()}")
    for name, scores in fitted.held_out.items():
        print(f"  held-out weeks {name}: {scores.line()}")
    try:
        points = curve(model, sets, embedder.embed)
        plot(points, model)
        print(f"wrote {PLOT.relative_to(ROOT)}")
    except ImportError:
        print("matplotlib is not installed: no plot (pip install -e '.[bench]')")


if __name__ == "__main__":
    main()
