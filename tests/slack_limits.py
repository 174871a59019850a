"""Slack's documented Block Kit limits, checked the way Slack checks them: the strict fake Slack
refuses a payload with a problem (``invalid_blocks``), and the scale tests assert there is none.

Limits are Slack's documented ones (api.slack.com/reference/block-kit), not the larger ones Slack
happens to accept today: 50 blocks per message, 100 per view, section text 3,000, header 150,
context 10 elements, a message's ``text`` 4,000 (Slack truncates only at 40,000). slack_sdk's own
models check the rest (button text, option counts, modal titles).
"""

from __future__ import annotations

import json

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
SECTION_TEXT = 3000
HEADER_TEXT = 150
CONTEXT_ELEMENTS = 10
MESSAGE_TEXT = 4000
# Block types Slack knows; anything else is refused with invalid_blocks.
KNOWN_BLOCKS = {
    "actions", "context", "divider", "file", "header", "image", "input", "markdown", "rich_text", "section",
    "video",
}  # fmt: skip


def _blocks(value: object) -> list:
    if isinstance(value, str):
        value = json.loads(value or "[]")
    return value if isinstance(value, list) else []


def block_problems(blocks: list, *, limit: int) -> list[str]:
    """What Slack would refuse in ``blocks`` (a message's or a view's)."""
    problems = []
    if len(blocks) > limit:
        problems.append(f"{len(blocks)} blocks (limit {limit})")
    for i, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in KNOWN_BLOCKS:
            problems.append(f"block {i}: unknown type {kind!r}")
            continue
        if kind == "section":
            text = (block.get("text") or {}).get("text", "")
            if len(text) > SECTION_TEXT:
                problems.append(f"block {i}: section text {len(text)} (limit {SECTION_TEXT})")
            if not text and not block.get("fields"):
                problems.append(f"block {i}: section without text or fields")
        if kind == "header" and len(block.get("text", {}).get("text", "")) > HEADER_TEXT:
            problems.append(f"block {i}: header text over {HEADER_TEXT}")
        if kind == "context":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= CONTEXT_ELEMENTS:
                problems.append(f"block {i}: context with {len(elements)} elements (1 to {CONTEXT_ELEMENTS})")
            for e in elements:
                if len(e.get("text", "")) > SECTION_TEXT:
                    problems.append(f"block {i}: context text over {SECTION_TEXT}")
    if not problems:
        try:
            for block in Block.parse_all(blocks):
                block.validate_json()
        except (SlackObjectFormationError, KeyError, TypeError, ValueError) as e:
            problems.append(f"slack_sdk: {e}")
    return problems


def message_problems(params: dict) -> list[str]:
    """What Slack would refuse in a chat.postMessage / chat.update / response_url body."""
    problems = block_problems(_blocks(params.get("blocks")), limit=MESSAGE_BLOCKS)
    text = params.get("text") or ""
    if len(text) > MESSAGE_TEXT:
        problems.append(f"text {len(text)} characters (limit {MESSAGE_TEXT})")
    return problems


def view_problems(view: object) -> list[str]:
    """What Slack would refuse in a Home tab or modal view."""
    if isinstance(view, str):
        view = json.loads(view)
    if not isinstance(view, dict):
        return ["view is not an object"]
    problems = block_problems(view.get("blocks", []), limit=VIEW_BLOCKS)
    if not problems:
        try:
            View(**view).validate_json()
        except (SlackObjectFormationError, TypeError, ValueError) as e:
            problems.append(f"slack_sdk view: {e}")
    return problems
