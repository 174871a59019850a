"""A deterministic synthetic news corpus for bench/stories.py (seeded; no downloads).

Stories are drawn from a T&S-flavoured vocabulary; each story is reported by 1–6 outlets whose
headlines reshuffle and trim the story's words and whose leads reuse the wire lead with edits,
as syndicated copies do. Timestamps spread over ``days`` days.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

ACTORS = """UNICEF INTERPOL Europol ECPAT NCMEC Ofcom eSafety FTC Thorn IWF police prosecutors regulators
ministers parliament senators court judge commission agency platform Meta Google Apple Microsoft TikTok
Snapchat Discord Roblox Telegram""".split()
ACTIONS = """warns urges arrests charges sentences fines bans investigates publishes launches removes blocks
sues condemns calls reports finds reveals announces approves passes rejects""".split()
THEMES = """deepfake nudify sextortion CSAM grooming livestream encryption detection moderation
age-verification apps images videos teenagers children schools parents networks scams extortion
abuse material AI-generated
chatbots accounts servers marketplace forums""".split()
PLACES = """Brazil Nigeria Philippines India Germany France Spain Italy Kenya Australia Canada Mexico Japan
Korea Poland Sweden Ireland Scotland Texas California Ontario Lagos Manila Madrid Berlin""".split()
FILLER = (
    """the of in on for with after over new amid against across under about this week says said""".split()
)
OUTLETS = """Reuters AP AFP APP BBC Guardian CNN DW NPR Verge Wired TechCrunch Politico Euronews Independent
Times Telegraph Mirror Express Herald Tribune Post Journal Gazette Observer Chronicle""".split()


@dataclass(frozen=True)
class SyntheticItem:
    story: int
    outlet: str
    title: str
    lead: str
    seen: datetime


def corpus(n_items: int, *, days: int = 60, seed: int = 7) -> Iterator[SyntheticItem]:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    produced = story = 0
    while produced < n_items:
        story += 1
        words = [
            rng.choice(ACTORS),
            rng.choice(ACTIONS),
            *rng.sample(THEMES, 3),
            rng.choice(PLACES),
            str(rng.randint(2, 5000)),
        ]
        lead_words = words + rng.sample(THEMES + PLACES + ACTORS, 14)
        first = start + timedelta(seconds=rng.uniform(0, days * 86400))
        for _ in range(min(rng.randint(1, 6), n_items - produced)):
            headline = rng.sample(words, k=rng.randint(4, len(words)))
            headline.insert(rng.randrange(len(headline) + 1), rng.choice(FILLER))
            lead = [w for w in lead_words if rng.random() > 0.15]
            yield SyntheticItem(
                story=story,
                outlet=rng.choice(OUTLETS),
                title=" ".join(headline).capitalize(),
                lead=" ".join(lead).capitalize() + ".",
                seen=first + timedelta(hours=rng.uniform(0, 30)),
            )
            produced += 1
