"""`newsalert render --sample`: an HTML approximation of what the bot shows in Slack, for review.

Block Kit is drawn with plain CSS (section, context, header, divider, actions with buttons and
overflow menus, the inputs of a modal) and Slack mrkdwn becomes HTML (bold, italics, code,
links, channel and user mentions, ``<!date…>`` times as their fallback text). The samples are
the bot's own renderings of an alert, a digest, the App Home tab and the two modals.
"""

from __future__ import annotations

import html
import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.alerts.digest import Digest, DigestStory, render_digest
from bot.alerts.render import MessageState, render_slack
from bot.app.home import home_view
from bot.app.modals import escalate_modal, mute_modal
from bot.model import Alert, Item, Source, StoryPost, Subscription, Summary, Watchlist
from bot.store import Store

BLOCK_TYPES = ("section", "context", "header", "divider", "actions", "input")

CSS = """
body { font: 15px/1.46 -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; color: #1d1c1d;
       background: #f8f8f8; margin: 0; padding: 24px; }
h1 { font-size: 20px; margin: 0 0 16px; } h2 { font-size: 13px; color: #616061; text-transform: uppercase;
       letter-spacing: .05em; margin: 28px 0 8px; }
.surface { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 12px 16px;
           max-width: 760px; }
.message { display: flex; gap: 10px; padding: 8px 0; }
.avatar { width: 36px; height: 36px; border-radius: 6px; background: #4a154b; color: #fff; font-weight: 700;
          display: flex; align-items: center; justify-content: center; flex: none; }
.who b { margin-right: 6px; } .who span { color: #616061; font-size: 12px; }
.block { margin: 4px 0; } .section { white-space: pre-wrap; }
.context { color: #616061; font-size: 13px; display: flex; flex-wrap: wrap; gap: 8px; }
.header { font-size: 18px; font-weight: 900; margin-top: 10px; }
.divider { border: 0; border-top: 1px solid #ddd; margin: 10px 0; }
.actions { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 8px; }
.button { border: 1px solid #bbb; border-radius: 4px; padding: 3px 12px; font-weight: 700; font-size: 13px;
          background: #fff; } .button.primary { background: #007a5a; border-color: #007a5a; color: #fff; }
.button.danger { background: #e01e5a; border-color: #e01e5a; color: #fff; }
.overflow { position: relative; } .overflow summary { list-style: none; cursor: pointer; }
.overflow ul { margin: 4px 0 0; padding: 4px 0; list-style: none; border: 1px solid #ddd; border-radius: 6px;
               background: #fff; box-shadow: 0 4px 12px #0002; min-width: 180px; }
.overflow li { padding: 3px 12px; font-size: 14px; }
.input label { display: block; font-weight: 700; margin: 10px 0 4px; }
.input .field { border: 1px solid #bbb; border-radius: 4px; padding: 6px 8px; color: #616061;
                min-height: 20px; }
.input .hint { color: #616061; font-size: 12px; }
.modal-title { font-weight: 900; font-size: 18px; border-bottom: 1px solid #ddd; padding-bottom: 8px; }
.modal-foot { display: flex; justify-content: flex-end; gap: 8px; margin-top: 14px; }
a { color: #1264a3; text-decoration: none; } code { background: #f6f6f6; border: 1px solid #e8e8e8;
    border-radius: 3px; color: #e01e5a; padding: 0 3px; font-size: 12px; }
.mention { background: #e8f5fa; color: #1264a3; border-radius: 3px; padding: 0 2px; }
blockquote { border-left: 4px solid #ddd; margin: 4px 0; padding-left: 10px; }
"""

_TOKEN = re.compile(r"<([^<>]*)>")
_BOLD = re.compile(r"(?<![\w*])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_(?!\s)([^_\n]+?)(?<!\s)_(?![\w_])")
_CODE = re.compile(r"`([^`\n]+)`")


def _token(inner: str) -> str:
    """One ``<…>`` of Slack mrkdwn as HTML. Its text is already entity-escaped, like all mrkdwn."""
    target, _, label = inner.partition("|")
    if target.startswith("!date^"):
        return f"<time>{label}</time>"
    if target.startswith("#"):
        return f'<span class="mention">#{html.escape(label or target[1:])}</span>'
    if target.startswith("@"):
        return f'<span class="mention">@{html.escape(target[1:])}</span>'
    if target.startswith("!"):
        return f'<span class="mention">@{html.escape(target[1:])}</span>'
    href = html.escape(html.unescape(target), quote=True)
    return f'<a href="{href}">{_inline(label) if label else html.escape(html.unescape(target))}</a>'


def mrkdwn(text: str) -> str:
    """Slack mrkdwn as HTML. Slack escapes only ``& < >`` in text, so everything outside a
    ``<…>`` token is already safe HTML once quotes are escaped too."""
    out, pos = [], 0
    for m in _TOKEN.finditer(text):
        out.append(_inline(text[pos : m.start()]))
        out.append(_token(m.group(1)))
        pos = m.end()
    out.append(_inline(text[pos:]))
    lines = "".join(out).split("\n")
    return "<br>".join(
        f"<blockquote>{line[4:]}</blockquote>" if line.startswith("&gt;") else line for line in lines
    )


def _inline(text: str) -> str:
    text = text.replace('"', "&quot;")
    text = _CODE.sub(r"<code>\1</code>", text)
    text = _BOLD.sub(r"<b>\1</b>", text)
    return _ITALIC.sub(r"<i>\1</i>", text)


def _text(obj: dict) -> str:
    if obj.get("type") == "mrkdwn":
        return mrkdwn(obj.get("text", ""))
    return html.escape(obj.get("text", ""))


def _element(e: dict) -> str:
    kind = e.get("type")
    if kind == "button":
        style = e.get("style", "")
        return f'<span class="button {html.escape(style)}">{_text(e["text"])}</span>'
    if kind == "overflow":
        options = "".join(f"<li>{_text(o['text'])}</li>" for o in e.get("options", []))
        return f'<details class="overflow"><summary class="button">⋮</summary><ul>{options}</ul></details>'
    if kind in ("static_select", "conversations_select"):
        initial = (e.get("initial_option") or {}).get("text") or {"text": "Choose…"}
        return f'<div class="field">{_text(initial)} ▾</div>'
    if kind == "radio_buttons":
        initial = (e.get("initial_option") or {}).get("value")
        return "".join(
            f"<div>{'◉' if o.get('value') == initial else '○'} {_text(o['text'])}</div>"
            for o in e.get("options", [])
        )
    if kind == "plain_text_input":
        return '<div class="field">&nbsp;</div>'
    return _text(e) if "text" in e else ""


def block(b: dict) -> str:
    """One Block Kit block as HTML; a type the preview does not know says so, visibly."""
    kind = b.get("type")
    if kind == "section":
        return f'<div class="block section" data-type="section">{_text(b["text"])}</div>'
    if kind == "context":
        parts = "".join(f"<span>{_text(e)}</span>" for e in b.get("elements", []))
        return f'<div class="block context" data-type="context">{parts}</div>'
    if kind == "header":
        return f'<div class="block header" data-type="header">{_text(b["text"])}</div>'
    if kind == "divider":
        return '<hr class="block divider" data-type="divider">'
    if kind == "actions":
        parts = "".join(_element(e) for e in b.get("elements", []))
        return f'<div class="block actions" data-type="actions">{parts}</div>'
    if kind == "input":
        hint = f'<div class="hint">{_text(b["hint"])}</div>' if b.get("hint") else ""
        optional = " <span class='hint'>(optional)</span>" if b.get("optional") else ""
        return (
            f'<div class="block input" data-type="input"><label>{_text(b["label"])}{optional}</label>'
            f"{_element(b['element'])}{hint}</div>"
        )
    return f'<div class="block" data-type="unknown">[block {html.escape(str(kind))} not previewed]</div>'


def message(blocks: list[dict]) -> str:
    body = "".join(block(b) for b in blocks)
    return (
        '<div class="message"><div class="avatar">N</div><div><div class="who"><b>newsalert</b>'
        f"<span>APP</span></div>{body}</div></div>"
    )


def modal(view: dict) -> str:
    body = "".join(block(b) for b in view.get("blocks", []))
    foot = (f'<span class="button">{_text(view["close"])}</span>' if view.get("close") else "") + (
        f'<span class="button primary">{_text(view["submit"])}</span>' if view.get("submit") else ""
    )
    return f'<div class="modal-title">{_text(view["title"])}</div>{body}<div class="modal-foot">{foot}</div>'


def page(surfaces: list[tuple[str, str]]) -> str:
    parts = "".join(
        f'<h2>{html.escape(name)}</h2><div class="surface">{body}</div>' for name, body in surfaces
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>newsalert in Slack (preview)</title><style>{CSS}</style></head><body>"
        f"<h1>newsalert in Slack — an approximation</h1>{parts}</body></html>"
    )


NOW = datetime(2026, 2, 5, 18, 0, tzinfo=UTC)
TITLE = "UNICEF urges governments to criminalise AI-generated child sexual abuse material"
LEAD = (
    "The United Nations children's agency called on governments to criminalise AI-generated child sexual "
    "abuse material, saying 1.2 million children had images manipulated into sexual deepfakes last year."
)


def sample_alert() -> Alert:
    bold = [(LEAD.index("child sexual abuse material"), LEAD.index("child sexual abuse material") + 27)]
    start = TITLE.index("child sexual abuse material")
    return Alert(
        1,
        "C0ALERTS",
        TITLE,
        "https://reuters.example/world/unicef-ai-abuse",
        "Reuters World",
        "",
        NOW - timedelta(minutes=12),
        ("csam", "unicef"),
        Summary(LEAD, tuple(bold)),
        reporters=("Reuters", "AP", "BBC"),
        story_id=7,
        title_bold=((start, start + 27),),
        matched=(("child sexual abuse material", "title"), ("UNICEF", "title")),
    )


def sample_page() -> str:
    """The whole preview page: an alert (fresh and claimed), a digest, App Home and the modals."""
    alert = sample_alert()
    fresh = render_slack(alert, actions=True)
    claimed = render_slack(
        alert, MessageState("claimed", "U0ANALYST", not_relevant_by=("U0B",)), actions=True
    )
    stories = tuple(
        DigestStory(n, f"{TITLE} ({n})" if n else TITLE, f"https://n.example/{n}", 3 - n % 3, NOW, w, LEAD)
        for n, w in enumerate(("csam", "csam", "unicef", "unicef", "unicef"))
    )
    digest = render_digest(
        Digest("d1", "C0ALERTS", ("csam", "unicef"), NOW - timedelta(days=1), NOW, stories)
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "preview.db")
        try:
            sources = tuple(Source(f"Outlet {i}", f"https://feeds{i}.example/rss") for i in range(20))
            watchlists = (
                Watchlist("csam", 'CSAM OR "child sexual abuse material*"'),
                Watchlist("unicef", "UNICEF"),
            )
            store.catalog.sync_config(
                sources, watchlists, (Subscription("C0ALERTS", ("csam", "unicef")),), NOW
            )
            item = Item("Outlet 0", "g1", alert.url, TITLE, LEAD, NOW, NOW)
            story = store.stories.new_story(NOW)
            item_id = store.items.add_item(item, story_id=story, new_story=True)
            store.stories.save_story_post(StoryPost(story, "C0ALERTS", item_id, "1.000001", ("csam",)), NOW)
            home = home_view(store, "U0ANALYST", lambda channel: True, NOW)
        finally:
            store.close()
    surfaces = [
        ("Alert", message(fresh.blocks)),
        ("Alert, claimed (the buttons follow the state)", message(claimed.blocks)),
        ("Digest", "".join(message(part.blocks) for part in digest)),
        ("App Home", "".join(block(b) for b in home["blocks"])),
        ("Escalate (modal)", modal(escalate_modal("C0ALERTS", "1.000001", TITLE, "C0ESCALATE"))),
        (
            "Mute source (modal)",
            modal(mute_modal("C0ALERTS", "1.000001", "source", ["Reuters World", "AP", "BBC"])),
        ),
    ]
    return page(surfaces)


def write_sample(path: Path) -> Path:
    path.write_text(sample_page(), encoding="utf-8")
    return path
