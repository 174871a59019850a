"""Trying a source once before it is added: fetch it, find which kind it is, preview its items."""

from __future__ import annotations

from bot.app.context import AppContext
from bot.config import Settings
from bot.errors import FetchError, ParseError
from bot.ingest.fetch import fetch_all
from bot.ingest.normalize import normalize
from bot.ingest.parse import parse
from bot.ingest.poll import limits_from
from bot.model import Fetched, Source


def _fetch_once(settings: Settings, source: Source) -> Fetched | FetchError:
    # The same fetcher as every poll: timeouts, size cap, and the address guard on every hop.
    return fetch_all([source], {}, limits_from(settings))[source.name]


def probe_source(ctx: AppContext, source: Source) -> tuple[Source, list, str | None]:
    """Fetch the URL once and find which kind of source it is; (source, items, problem)."""
    outcome = (ctx.fetch or _fetch_once)(ctx.settings, source)
    if isinstance(outcome, FetchError):
        return source, [], ("refused: " if outcome.blocked else "") + outcome.reason
    if outcome.not_modified or not outcome.body:
        return source, [], "the server sent no content"
    kinds = ["wordpress"] if "/wp-json/" in source.url else ["feed", "wordpress"]
    problem = "not a feed"
    for kind in kinds:
        candidate = Source(source.name, source.url, kind, source.interval)  # type: ignore[arg-type]
        try:
            entries = parse(outcome.body, candidate, outcome.headers)
        except ParseError as e:
            problem = f"not a feed ({e.reason})"
            continue
        now = ctx.now()
        items = []
        for entry in entries:
            try:
                items.append(normalize(entry, candidate, now))
            except Exception:  # the preview skips odd entries, as a poll does
                continue
        return candidate, items, None
    return source, [], problem
