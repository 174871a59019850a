"""`newsalert demo`: the real pipeline, fully offline, on the bundled sample feeds.

The samples in bot/data/samples/ (package data, so it works from any directory) are served by a
throwaway HTTP server on 127.0.0.1: the demo runs the same fetch -> parse -> match -> store ->
deliver path as production.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bot.config import Settings
from bot.errors import ConfigError
from bot.model import SOURCE_TYPES, Source, Subscription

DEMO_CHANNEL = "#demo"


DATA = Path(__file__).resolve().parent / "data"  # package data: it ships with the wheel
STARTER_CONFIG = DATA / "newsalert.toml"  # what `newsalert init` writes; the same as config/newsalert.toml


def samples_dir() -> Path:
    """The bundled sample feeds, inside the installed package: the demo works from any directory."""
    candidate = DATA / "samples"
    if not (candidate / "samples.toml").is_file():
        raise ConfigError(str(candidate / "samples.toml"), "file not found (a broken install?)")
    return candidate


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on a free loopback port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def sample_sources(directory: Path, base_url: str) -> tuple[Source, ...]:
    path = directory / "samples.toml"
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), f"invalid TOML: {e}") from None
    sources = []
    for i, entry in enumerate(doc.get("sources", [])):
        kind = entry.get("type", "feed")
        if kind not in SOURCE_TYPES or not (directory / entry.get("file", "")).is_file():
            raise ConfigError(str(path), f"bad type or missing file: {entry!r}", key=f"sources[{i}]")
        sources.append(Source(name=entry["name"], url=base_url + entry["file"], type=kind))
    return tuple(sources)


def demo_settings(settings: Settings, sources: tuple[Source, ...], db_path: str) -> Settings:
    """The user's watchlists, the sample sources, one console channel subscribed to everything.

    The first-poll guard is off: the samples are dated, and a demo that alerts nothing because
    the sample news is older than a day would demonstrate nothing.
    """
    return dataclasses.replace(
        settings,
        sources=sources,
        subscriptions=(Subscription(DEMO_CHANNEL, tuple(w.name for w in settings.watchlists)),),
        first_poll_window=None,
        allow_private_sources=True,  # the samples are served on 127.0.0.1
        db_path=db_path,
        slack_token=None,
    )
