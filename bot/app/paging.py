"""Command replies cut into pages that fit one Slack message, with "Next page" buttons.

A page is a few sections of whole lines (never over Slack's 3,000 characters a section or 50
blocks a message); the buttons carry a page cursor, ``"<page>|<command line>"``, which the
click listener (bot/slack/listeners/actions.py) reads with ``parse_cursor`` and answers by
running the command again for that page, replacing the ephemeral reply in place. The cursor comes
back from Slack as any other input: it is bounded and checked, and only listing commands run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.alerts.render import BLOCK_TEXT_LIMIT, TEXT_LIMIT, fit

PAGE_LINES = 20  # lines a page shows: a screenful, far under Slack's limits
PAGE_CHARS = 9000  # and at most this much text (three full sections)
MAX_PAGE = 1000  # a cursor beyond this is not one newsalert made
BUTTON_VALUE = 2000  # Slack's limit for a button value
PAGED_COMMANDS = ("sources", "status", "watchlists", "list", "search")
PAGE_ACTIONS = ("page_prev", "page_next")
_CURSOR = re.compile(r"^(\d{1,4})\|(.{1,1990})$", re.DOTALL)


@dataclass(frozen=True)
class Cursor:
    page: int  # 1-based
    command: str  # the command line that made the reply ("search unicef since:7d")


def parse_cursor(value: str) -> Cursor | None:
    """The cursor in a page button's value; None when it is not one newsalert made."""
    m = _CURSOR.match(value[: BUTTON_VALUE + 1])
    if m is None:
        return None
    page, command = int(m.group(1)), m.group(2)
    if not 1 <= page <= MAX_PAGE or command.split(maxsplit=1)[0] not in PAGED_COMMANDS:
        return None
    return Cursor(page, command)


def cut_pages(lines: Sequence[str]) -> list[list[str]]:
    """``lines`` packed into pages of at most PAGE_LINES lines and PAGE_CHARS characters."""
    pages: list[list[str]] = [[]]
    size = 0
    for line in lines:
        line = fit(line, BLOCK_TEXT_LIMIT)
        if pages[-1] and (len(pages[-1]) >= PAGE_LINES or size + len(line) > PAGE_CHARS):
            pages.append([])
            size = 0
        pages[-1].append(line)
        size += len(line) + 1
    return pages


def sections(lines: Sequence[str]) -> list[dict]:
    """Lines as mrkdwn sections, each under Slack's 3,000 characters, lines never split."""
    blocks: list[dict] = []
    chunk: list[str] = []
    for line in lines:
        if chunk and len("\n".join([*chunk, line])) > BLOCK_TEXT_LIMIT:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(chunk)}})
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(chunk)}})
    return blocks


@dataclass(frozen=True)
class Page:
    text: str  # the fallback: this page's lines, cut to Slack's 4,000
    blocks: list[dict]


def page_of(
    heading: str,
    lines: Sequence[str],
    command: str,
    page: int,
    *,
    more: bool | None = None,
) -> Page:
    """Page ``page`` of ``heading`` and ``lines`` for the reply to ``command``.

    Given ``more``, ``lines`` already are that page (a search reads one page from the database);
    otherwise ``lines`` are all of them and are cut here.
    """
    if more is None:
        pages = cut_pages(lines)
        page = min(max(page, 1), len(pages))
        shown, count = pages[page - 1], len(pages)
        has_next = page < count
    else:
        shown, count, has_next = list(lines), None, more
    body = [heading, *shown] if heading else shown
    blocks = sections([fit(line, BLOCK_TEXT_LIMIT) for line in body])
    where = f"Page {page}" + (f" of {count}" if count else "")
    buttons = []
    value_ok = len(command) <= BUTTON_VALUE - 10
    if page > 1 and value_ok:
        buttons.append(_button("page_prev", "Previous page", page - 1, command))
    if has_next and value_ok:
        buttons.append(_button("page_next", "Next page", page + 1, command, primary=True))
    if count != 1:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": where}]})
    if buttons:
        blocks.append({"type": "actions", "block_id": "paging", "elements": buttons})
    return Page(fit("\n".join(body), TEXT_LIMIT), blocks)


def _button(action_id: str, label: str, page: int, command: str, *, primary: bool = False) -> dict:
    button = {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": label},
        "value": f"{min(page, MAX_PAGE)}|{command}",
    }
    if primary:
        button["style"] = "primary"
    return button
