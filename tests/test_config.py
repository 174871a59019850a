from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings, parse_duration
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
[defaults]
interval = "15m"

[[sources]]
name = "UN News"
url = "https://news.un.org/feed/subscribe/en/news/all/rss.xml"

[[sources]]
name = "APP"
url = "https://www.app.com.pk/wp-json/wp/v2/posts"
type = "wordpress"
interval = "5m"

[watchlists.csam]
query = 'CSAM OR "child sexual abuse material"'

[watchlists.deepfakes]
query = 'deep-fake* OR nudif*'

[[subscriptions]]
channel = "C0123456789"
watchlists = ["csam", "deepfakes"]
"""


def load(tmp_path: Path, text: str, **kwargs):
    path = tmp_path / "newsalert.toml"
    path.write_text(text)
    return load_settings(path, environ=kwargs.pop("environ", {}), **kwargs)


def error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value


def test_good_config_resolves(tmp_path: Path) -> None:
    settings = load(tmp_path, GOOD)
    assert [s.name for s in settings.sources] == ["UN News", "APP"]
    assert settings.sources[0].interval == 900
    assert settings.sources[1].interval == 300
    assert settings.sources[1].type == "wordpress"
    assert [w.name for w in settings.watchlists] == ["csam", "deepfakes"]
    assert settings.subscriptions[0].watchlists == ("csam", "deepfakes")
    assert settings.first_poll_window == 86400
    assert settings.slack_token is None
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.db_path == "newsalert.db"


def test_environment_supplies_slack_and_database(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        GOOD,
        environ={
            "SLACK_BOT_TOKEN": "xoxb-1",
            "SLACK_API_URL": "http://127.0.0.1:9/api",
            "NEWSALERT_DB": "x.db",
        },
    )
    assert settings.slack_token == "xoxb-1"
    assert settings.slack_api_url == "http://127.0.0.1:9/api/"
    assert settings.db_path == "x.db"
    assert load(tmp_path, GOOD, db_path="cli.db", environ={"NEWSALERT_DB": "x.db"}).db_path == "cli.db"


def test_the_shipped_default_config_is_valid() -> None:
    settings = load_settings(ROOT / "config" / "newsalert.toml", environ={})
    assert {"csam", "deepfakes", "unicef", "sextortion"} <= {w.name for w in settings.watchlists}
    assert settings.sources and settings.subscriptions


def test_bad_toml_names_file_and_line(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD.replace('interval = "5m"', 'interval = "5m'))
    assert str(e).startswith(f"{tmp_path / 'newsalert.toml'}:13: invalid TOML")
    assert e.line == 13


@pytest.mark.parametrize(
    ("change", "line", "key", "problem"),
    [
        (('interval = "15m"', 'intervall = "15m"'), 3, "defaults.intervall", "unknown key"),
        (
            ('type = "wordpress"', 'type = "wordpress"\ncolour = "red"'),
            13,
            'sources[1] "APP".colour',
            "unknown key",
        ),
        (
            ('watchlists = ["csam", "deepfakes"]', 'watchlists = ["csam", "deepfake"]'),
            23,
            "subscriptions[0].watchlists",
            "unknown watchlist 'deepfake'",
        ),
        (
            ('url = "https://news.un.org', 'url = "ftp://news.un.org'),
            7,
            'sources[0] "UN News".url',
            "must be an http:// or https:// URL",
        ),
        (
            ('url = "https://news.un.org/feed/subscribe/en/news/all/rss.xml"', 'url = "http://127.0.0.1/x"'),
            7,
            'sources[0] "UN News".url',
            "private or loopback",
        ),
        (('interval = "5m"', 'interval = "soon"'), 13, 'sources[1] "APP".interval', "expected a duration"),
        (('type = "wordpress"', 'type = "atom"'), 12, 'sources[1] "APP".type', "must be one of"),
        (
            ("query = 'deep-fake* OR nudif*'", "query = 'deep-fake* OR (nudif*'"),
            19,
            "watchlists.deepfakes.query",
            'watchlist "deepfakes"',
        ),
        (
            ("[watchlists.deepfakes]", '[watchlists."<!here>"]'),
            18,
            "watchlists.<!here>",
            "'<!here>' cannot be a watchlist name: letters, digits, - and _",
        ),
        (('name = "APP"', 'name = "UN News"'), 10, 'sources[1] "UN News".name', "duplicate source name"),
        (
            ('channel = "C0123456789"', 'channel = "not a channel!"'),
            22,
            "subscriptions[0].channel",
            "must be a Slack channel ID",
        ),
    ],
)
def test_semantic_errors_name_line_key_and_problem(tmp_path, change, line, key, problem) -> None:
    old, new = change
    assert old in GOOD
    e = error(tmp_path, GOOD.replace(old, new))
    assert e.line == line, str(e)
    assert e.key == key
    assert problem in str(e)
    assert "\n" not in str(e)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_private_sources_allowed_when_asked(tmp_path: Path) -> None:
    text = GOOD.replace('interval = "15m"', 'interval = "15m"\nallow_private_sources = true')
    text = text.replace("https://news.un.org/feed/subscribe/en/news/all/rss.xml", "http://127.0.0.1:8080/f")
    assert load(tmp_path, text).sources[0].url == "http://127.0.0.1:8080/f"


def test_first_poll_window_can_be_turned_off(tmp_path: Path) -> None:
    text = GOOD.replace('interval = "15m"', 'interval = "15m"\nfirst_poll_window = "0"')
    assert load(tmp_path, text).first_poll_window is None


@pytest.mark.parametrize(
    ("text", "seconds"), [("15m", 900), ("2h", 7200), ("1d", 86400), ("30s", 30), (60, 60)]
)
def test_parse_duration(text, seconds) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "15 minutes", "-5m", 0, True, "1.5h"])
def test_parse_duration_rejects(bad) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)
