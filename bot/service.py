"""The bot as one object: settings + database + sink. The CLI and the scheduler call this."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.config import Settings
from bot.deliver import ConsoleSink, DeliveryReport, RetryLater, Sink, SlackSink, deliver_pending
from bot.errors import SlackAuthError
from bot.model import Source
from bot.pipeline import PollReport, poll
from bot.scheduler import build_scheduler
from bot.store import Store

log = logging.getLogger("newsalert")


def make_sink(settings: Settings) -> Sink:
    """Slack when a token is set (checked with auth.test), else the console."""
    if not settings.slack_token:
        log.warning("SLACK_BOT_TOKEN is not set: alerts are printed to the console")
        return ConsoleSink()
    sink = SlackSink(settings.slack_token, settings.slack_api_url)
    try:
        who = sink.check_auth()
        log.info(
            "slack connected team=%r bot_user=%r api=%s",
            who.get("team"),
            who.get("user"),
            settings.slack_api_url,
        )
    except RetryLater as e:
        # Unreachable is not unauthorized: keep polling, alerts wait in the outbox.
        log.warning("slack unreachable, alerts will queue: %s", e)
    return sink


@dataclass
class PollOutcome:
    poll: PollReport
    delivery: DeliveryReport

    def summary(self) -> str:
        p, d = self.poll, self.delivery
        held = f", {p.held_back} older matches stored without alerting" if p.held_back else ""
        queued = f", {d.queued} alerts waiting" if d.queued else ""
        failed = f", {d.failed} alerts undeliverable" if d.failed else ""
        return (
            f"polled {p.polled} sources ({p.failed} failed), {p.new_items} new items, "
            f"{p.matches} matched, {d.sent} alerts sent{queued}{failed}{held}"
        )


class Newsalert:
    def __init__(self, settings: Settings, sink: Sink):
        self.settings = settings
        self.sink = sink
        # Fail early (StoreError) on an unusable database, and seed it from the config file.
        store = Store.open(settings.db_path)
        try:
            now = datetime.now(UTC)
            store.sync_config(settings.sources, settings.watchlists, settings.subscriptions, now)
        finally:
            store.close()

    def poll_once(self, sources: Sequence[Source] | None = None, *, due_only: bool = False) -> PollOutcome:
        """Poll, then deliver everything queued. SlackAuthError propagates (alerts stay queued)."""
        store = Store.open(self.settings.db_path)
        try:
            report = poll(self.settings, store, sources, due_only=due_only)
            return PollOutcome(report, deliver_pending(store, self.sink))
        finally:
            store.close()

    def deliver(self) -> DeliveryReport:
        store = Store.open(self.settings.db_path)
        try:
            return deliver_pending(store, self.sink)
        finally:
            store.close()

    def run(self) -> None:
        """Poll on schedule until interrupted."""

        def poll_job(sources: list[Source]) -> None:
            try:
                # Scheduled polls skip sources that are backing off after failures.
                log.info("poll done %s", self.poll_once(sources, due_only=True).summary())
            except SlackAuthError as e:
                log.critical("delivery stopped: %s (alerts stay queued until the token is fixed)", e)

        def deliver_job() -> None:
            try:
                report = self.deliver()
                if report.sent or report.failed:
                    log.info(
                        "delivery sent=%d failed=%d waiting=%d", report.sent, report.failed, report.queued
                    )
            except SlackAuthError as e:
                log.critical("delivery stopped: %s (alerts stay queued until the token is fixed)", e)

        store = Store.open(self.settings.db_path)
        try:
            sources, watchlists = store.active_sources(), store.active_watchlists()
        finally:
            store.close()
        scheduler = build_scheduler(sources, poll_job, deliver_job)
        log.info("running sources=%d watchlists=%d", len(sources), len(watchlists))
        try:
            scheduler.start()
        except (KeyboardInterrupt, SystemExit):
            scheduler.shutdown(wait=False)
            log.info("stopped")
