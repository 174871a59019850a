"""The bot as one object: settings + database + sink. The CLI and the scheduler call this."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.alerts import digest
from bot.alerts.outbox import DeliveryReport, deliver_pending
from bot.alerts.sink import Sink
from bot.app.context import AppContext
from bot.config import Settings
from bot.errors import ConfigError, ParseError, RetryLater, SlackAuthError
from bot.ingest.pacing import RateCache
from bot.ingest.poll import PollReport, ingest_pushed, poll
from bot.model import Source, Subscription
from bot.scheduler import WEBSUB, Scheduler
from bot.store import Store
from bot.worker import Worker

log = logging.getLogger("newsalert")

WEBSUB_UPKEEP_SECONDS = 1.0  # subscriptions to send, leases to renew: one cheap query when none


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
            store.catalog.sync_config(settings.sources, settings.watchlists, settings.subscriptions, now)
        finally:
            store.close()

    @staticmethod
    def seeded_store(settings: Settings) -> Store:
        """The database, opened and brought in line with the config file (the caller closes it)."""
        store = Store.open(settings.db_path)
        store.catalog.sync_config(
            settings.sources, settings.watchlists, settings.subscriptions, datetime.now(UTC)
        )
        return store

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

    def run(
        self, *, http_port: int | None = None, host: str = "0.0.0.0", metrics_port: int | None = None
    ) -> None:
        """Poll on schedule until interrupted, and serve the Slack app in the same process:
        HTTP (Bolt at POST /slack/events) when ``http_port`` is given, Socket Mode when
        SLACK_APP_TOKEN is set, else no app (alerts only).

        The process is one worker (bot/worker.py) of any number on the database: it polls the
        due sources it leases, delivers the channels it claims, sends the digest windows it claims."""

        rates = RateCache()
        mode = "http" if http_port is not None else "socket" if self.settings.slack_app_token else "none"
        worker = Worker(self.settings.db_path, lease_seconds=self.settings.worker_lease, mode=mode)

        def poll_job(due: list[Source]) -> None:
            # Only the sources this worker leased, still due; what they queue is delivered by the
            # delivery thread, woken at each commit that queued alerts, while the poll goes on.
            sources = worker.take(due)
            if not sources:
                return
            try:
                with self._store() as store:
                    report = poll(
                        self.settings,
                        store,
                        sources,
                        due_only=True,
                        queued=scheduler.deliver_now,
                        rates=rates,
                    )
            finally:
                worker.release(sources)  # their next polls are decided: another worker will not refetch
            held = f", {report.held_back} older matches stored without alerting" if report.held_back else ""
            log.info(
                "poll done polled %d sources (%d failed), %d new items, %d matched, %d alerts queued%s",
                report.polled,
                report.failed,
                report.new_items,
                report.matches,
                report.alerts_queued,
                held,
            )

        def deliver_job() -> None:
            try:
                with self._store() as store:
                    report = deliver_pending(store, self.sink, worker=worker.id, claim_stale=worker.lease)
                if report.sent or report.failed:
                    log.info(
                        "delivery sent=%d failed=%d waiting=%d", report.sent, report.failed, report.queued
                    )
            except SlackAuthError as e:
                log.critical("delivery stopped: %s (alerts stay queued until the token is fixed)", e)

        def digest_job(subscription_id: str) -> None:
            try:
                with self._store() as store:
                    now = datetime.now(UTC)
                    # Every worker's cron fires: the one that claims this scheduled time sends it.
                    # An interrupted digest is finished under its own claim (claim_unfinished).
                    resume = store.digests.unfinished_digest(subscription_id) is not None
                    if not resume:
                        period = digest.digest_period(store, subscription_id, now)
                        if not worker.once(f"digest:{subscription_id}", period):
                            log.info("digest sent by another worker subscription=%s", subscription_id)
                            return
                    digest.send_digest(
                        store,
                        self.sink,
                        subscription_id,
                        now,
                        worker=worker.id,
                        claim_stale=worker.lease,
                        # Found being sent: only finish it. Its sender may be done by now, and a new
                        # window begun here would be a second digest for the same scheduled time.
                        resume_only=resume,
                    )
            except SlackAuthError as e:
                log.critical("digest not sent: %s", e)
            except RetryLater as e:  # Slack down or a long rate limit: the next run finishes it
                log.warning(
                    "digest not sent subscription=%s reason=%s (its window stays open)", subscription_id, e
                )
            except Exception:  # a digest failing must not stop the scheduler; the window stays open
                log.exception(
                    "digest failed subscription=%s (its window stays open for the next one)", subscription_id
                )

        scheduler = Scheduler(
            self._due_sources,
            poll_job,
            deliver_job,
            self._digest_subscriptions,
            digest_job,
            alerts_due=self._alerts_due,
        )
        worker.start()
        self._schedule_housekeeping(scheduler, worker, digest_job)
        websub = None
        if http_port is not None and self.settings.websub_base_url:
            from bot.ingest.websub import WebSub

            websub = WebSub(
                self.settings,
                lambda *push: scheduler.submit(self._ingest_push, *push, scheduler.deliver_now),
            )
            scheduler.every(WEBSUB_UPKEEP_SECONDS, websub.maintain, "websub", executor=WEBSUB)
            log.info("websub on callback=%s", websub.callback_url("…"))
        # Digests whose time passed while the bot was down go out once now (within the grace).
        with self._store() as store:
            missed = digest.missed_digests(
                store, datetime.now(UTC), timedelta(seconds=self.settings.digest_grace)
            )
        for subscription_id in missed:
            log.info("sending a digest missed while the bot was down subscription=%s", subscription_id)
            scheduler.add_job(
                digest_job,
                "date",
                run_date=datetime.now(UTC),
                args=[subscription_id],
                id=f"missed-digest-{subscription_id}",
            )
        scheduler.start()
        with self._store() as store:
            log.info(
                "running sources=%d watchlists=%d",
                len(store.catalog.active_sources()),
                len(store.catalog.active_watchlists()),
            )
        context = AppContext(self.settings, catalog_changed=scheduler.sync)
        try:
            if http_port is not None:
                from bot.slack.app import serve_http  # Bolt is imported only when Slack is served

                serve_http(context, host=host, port=http_port, scheduler_alive=scheduler.alive, websub=websub)
            else:
                if metrics_port is not None:
                    from bot.ops.http import start_metrics_server

                    start_metrics_server(metrics_port, self.settings.db_path, scheduler.alive)
                if self.settings.slack_app_token:
                    from bot.slack.app import run_socket_mode

                    run_socket_mode(context)
                else:
                    threading.Event().wait()  # the scheduler's thread does the work
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            scheduler.shutdown()
            worker.stop()
            log.info("stopped")

    def _digest_subscriptions(self) -> list[tuple[str, Subscription]]:
        with self._store() as store:
            return [(sid, sub) for sid, sub, _, _ in store.catalog.subscriptions() if sub.mode == "digest"]

    def _due_sources(self) -> list[Source]:
        """Active sources whose next poll has come: read-only, so the tick never waits for a writer."""
        store = Store.open_readonly(self.settings.db_path)
        try:
            return store.catalog.active_sources(due_by=datetime.now(UTC))
        finally:
            store.close()

    def _alerts_due(self) -> bool:
        """Queued alerts whose wait is over (a retry's backoff, a held follow-up's mute)."""
        store = Store.open_readonly(self.settings.db_path)
        try:
            return bool(store.outbox.channels_with_pending_alerts(datetime.now(UTC)))
        finally:
            store.close()

    def _ingest_push(
        self, name: str, body: bytes, headers: dict[str, str], deliver_now: Callable[[], None]
    ) -> None:
        """A WebSub push, on the scheduler's push worker: stored and queued like a poll's body,
        then handed to the delivery thread at once."""
        try:
            with self._store() as store:
                source = next((s for s in store.catalog.active_sources() if s.name == name), None)
                if source is None:
                    log.info("websub push ignored source=%r: no longer an active source", name)
                    return
                report = ingest_pushed(self.settings, store, source, body, headers, datetime.now(UTC))
            if report.alerts_queued:
                deliver_now()
        except ParseError as e:
            log.warning("websub push unreadable source=%r: %s", name, e.reason)
        except Exception:  # a push must not take the worker down; polling will find the items
            log.exception("websub push failed source=%r (polling will fetch it)", name)

    def _store(self) -> Store:
        return Store.open(self.settings.db_path)  # a context manager: closed at the end of `with`

    def _schedule_housekeeping(
        self, scheduler: Scheduler, worker: Worker, digest_job: Callable[[str], None]
    ) -> None:
        # Daily pruning of history older than [defaults] retention_days (bot.history.prune), by
        # one worker a day: each looks every hour, the first to claim the UTC day prunes.
        retention = self.settings.retention_days
        from bot import history

        def prune() -> None:
            if not worker.once("prune", datetime.now(UTC).date().isoformat()):
                return
            with self._store() as store:
                history.prune(store, retention_days=retention)

        scheduler.add_job(prune, "interval", hours=1, id="prune", next_run_time=datetime.now(UTC))

        def finish_interrupted_digests() -> None:
            # A worker that died while sending a digest leaves it 'sending' under its claim: once
            # that claim is stale (or its process gone), a live worker finishes the window.
            with self._store() as store:
                unfinished = store.digests.unfinished_subscriptions()
            for subscription_id in unfinished:
                digest_job(subscription_id)

        # Re-run a lease after each run ends (not an interval job, which warns when a run is late).
        scheduler.every(self.settings.worker_lease, finish_interrupted_digests, "digests-interrupted")


def check_run_mode(settings: Settings, *, http: bool) -> str:
    """Which way `newsalert run` talks to Slack ("http", "socket" or "none"); a ConfigError when the
    environment lacks what that way needs."""
    if http:
        if not settings.slack_signing_secret:
            raise ConfigError(
                "SLACK_SIGNING_SECRET", "not set: HTTP mode verifies every request from Slack with it"
            )
        if not settings.slack_token:
            raise ConfigError("SLACK_BOT_TOKEN", "not set: the Slack app needs the bot token (xoxb-…)")
        return "http"
    if settings.slack_app_token:
        if not settings.slack_app_token.startswith("xapp-"):
            raise ConfigError("SLACK_APP_TOKEN", "must be an app-level token (xapp-…) with connections:write")
        if not settings.slack_token:
            raise ConfigError("SLACK_BOT_TOKEN", "not set: Socket Mode needs the bot token (xoxb-…) too")
        return "socket"
    return "none"
