"""The command line as a user meets it: subprocesses, exit codes, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_newsalert


@pytest.mark.parametrize("command", [["run"], ["poll", "--once"], ["demo"], ["check-config"]])
def test_invalid_config_exits_2_with_one_line_for_every_command(tmp_path: Path, command) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[defaults]\ninterval = "15m"\n\n[[sources]]\nname = "x"\nurl = "ftp://example.org/feed"\n'
    )
    result = run_newsalert("--config", str(bad), *command)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f'newsalert: config error: {bad}:6: sources[0] "x".url: must be an http:// or https:// URL, '
        "got 'ftp://example.org/feed'"
    )


def test_config_path_from_environment(tmp_path: Path) -> None:
    result = run_newsalert("check-config", env={"NEWSALERT_CONFIG": str(tmp_path / "missing.toml")})
    assert result.returncode == 2
    assert "missing.toml: file not found" in result.stderr


def test_check_config_prints_what_it_resolved() -> None:
    result = run_newsalert("check-config", env={"NEWSALERT_DB": "/tmp/x.db"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config OK: config/newsalert.toml")
    assert "database: /tmp/x.db" in result.stdout
    assert "csam:" in result.stdout and "subscriptions (1):" in result.stdout


def test_unusable_database_exits_3(tmp_path: Path) -> None:
    not_a_db = tmp_path / "junk.db"
    not_a_db.write_bytes(b"this is not a database" * 100)
    result = run_newsalert("--db", str(not_a_db), "poll", "--once")
    assert result.returncode == 3
    assert "junk.db" in result.stderr and "Traceback" not in result.stderr


def test_demo_prints_alerts_offline() -> None:
    result = run_newsalert("demo")
    assert result.returncode == 0, result.stderr
    assert "UNICEF calls on governments to criminalize AI-generated child abuse material" in result.stdout
    assert "[csam, deepfakes, unicef]" in result.stdout
    assert "Premier League" not in result.stdout
    assert "alerts sent" in result.stdout.splitlines()[-1]


def test_global_options_work_after_the_command(tmp_path: Path) -> None:
    result = run_newsalert("check-config", "--db", str(tmp_path / "after.db"))
    assert f"database: {tmp_path / 'after.db'}" in result.stdout


def test_help_lists_the_commands() -> None:
    result = run_newsalert("--help")
    for command in ("run", "poll", "demo", "check-config"):
        assert command in result.stdout
