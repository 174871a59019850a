from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_slack import FakeSlack
from tests.feed_server import FeedServer

DATA = Path(__file__).parent / "data"


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
