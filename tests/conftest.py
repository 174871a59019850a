from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_slack import FakeSlack
from tests.feed_server import FeedServer

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent


def bot_env(**extra: str) -> dict[str, str]:
    """This environment without the shell's SLACK_* and NEWSALERT_* settings, plus ``extra``:
    a test's `newsalert` subprocess must never reach a real workspace or database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "NEWSALERT_"))}
    return env | extra


def run_bot(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m bot ARGS` from the project directory, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    server = FeedServer().start()
    yield server
    server.stop()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()
    assert fake.violations == [], fake.violations
    assert fake.refused == [], fake.refused  # real Slack would have refused these payloads
