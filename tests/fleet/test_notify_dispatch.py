"""The outbox and its dispatcher: retries with backoff on an injected clock, visible
failures, and claims that hold when two dispatchers share one database."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete

from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import Notification, NotificationStatus
from fleet.notify import Dispatcher, NotifyConfig, build_channels, enqueue
from fleet.notify.base import Channel, Outgoing
from fleet.notify.config import EmailConfig
from fleet.notify.outbox import failed_notifications, requeue
from fleet.notify.webhook import WebhookChannel
from tests.clock import ManualClock as Clock
from tests.fleet.notify_helpers import T0, add, load, sample, two_processes
from tests.fleet.smtp import SmtpServer
from tests.fleet.webhook_receiver import WebhookReceiver
from tests.waiting import wait_until


def dispatcher(
    sessions: SessionFactory, clock: Clock, config: NotifyConfig | None = None, **email: object
) -> Dispatcher:
    config = config or NotifyConfig()
    config.email = EmailConfig(**email)  # type: ignore[arg-type]
    return Dispatcher(sessions, build_channels(config, clock), config, clock)


# ---------------------------------------------------------------- outbox


def test_enqueue_refuses_bad_input_and_keeps_nothing(sessions: SessionFactory) -> None:
    for channel, target, now, match in [
        ("sms", "13800000000", T0, "unknown notification channel"),
        ("email", "  ", T0, "empty target"),
        ("email", "a@b.cn", T0.replace(tzinfo=None), "timezone-aware"),
    ]:
        with pytest.raises(ValueError, match=match), session_scope(sessions) as session:
            enqueue(
                session,
                alert_id=None,
                channel=channel,
                target=target,
                kind="firing",
                subject="s",
                body="b",
                now=now,
            )
    with session_scope(sessions) as session:
        assert session.query(Notification).count() == 0


def test_enqueue_is_pending_and_due_now(sessions: SessionFactory, clock: Clock) -> None:
    row = load(sessions, add(sessions, "email", "wang@dmd.edu.cn", clock))
    assert row.status is NotificationStatus.PENDING
    assert (row.attempts, row.next_attempt_at, row.last_error) == (0, T0, None)


# ---------------------------------------------------------------- delivery


def test_email_delivered_once(
    sessions: SessionFactory, clock: Clock, smtp_server: SmtpServer
) -> None:
    row_id = add(sessions, "email", "wang@dmd.edu.cn", clock)
    d = dispatcher(sessions, clock, host=smtp_server.host, port=smtp_server.port)
    assert d.run_due() == 1
    assert d.run_due() == 0
    row = load(sessions, row_id)
    assert (row.status, row.attempts, row.sent_at) == (NotificationStatus.SENT, 1, T0)
    [got] = smtp_server.messages
    assert got.message["Subject"] == "【告警】三(2)班 摄像头缺失 camera missing"
    samples = list(d.samples())
    assert sample(samples, "syncclass_notifications", channel="email", status="sent") == 1
    assert sample(samples, "syncclass_notification_oldest_pending_seconds") == 0


def test_not_due_yet_waits(sessions: SessionFactory, clock: Clock, smtp_server: SmtpServer) -> None:
    add(sessions, "email", "wang@dmd.edu.cn", Clock(T0 + timedelta(minutes=5)))
    d = dispatcher(sessions, clock, host=smtp_server.host, port=smtp_server.port)
    assert d.run_due() == 0
    clock.advance(300)
    assert d.run_due() == 1


def test_receiver_failing_twice_delivers_on_third_attempt_with_backoff(
    sessions: SessionFactory, clock: Clock, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.fail_next(2, 503)
    row_id = add(sessions, "webhook", webhook_receiver.url("/hook"), clock)
    d = dispatcher(sessions, clock)

    assert d.run_due() == 1
    row = load(sessions, row_id)
    assert (row.status, row.attempts) == (NotificationStatus.PENDING, 1)
    assert row.next_attempt_at == T0 + timedelta(seconds=30)
    assert row.last_error is not None and "HTTP 503" in row.last_error

    clock.advance(29)
    assert d.run_due() == 0  # backing off
    clock.advance(1)
    assert d.run_due() == 1
    assert load(sessions, row_id).next_attempt_at == clock() + timedelta(seconds=60)

    clock.advance(60)
    assert d.run_due() == 1
    row = load(sessions, row_id)
    assert (row.status, row.attempts, row.sent_at) == (NotificationStatus.SENT, 3, clock())
    assert [r.accepted for r in webhook_receiver.requests] == [False, False, True]
    samples = list(d.samples())
    assert (
        sample(samples, "syncclass_notification_attempts_total", channel="webhook", outcome="retry")
        == 2
    )
    assert (
        sample(samples, "syncclass_notification_attempts_total", channel="webhook", outcome="sent")
        == 1
    )


def test_smtp_down_retried_then_failed_and_visible(
    sessions: SessionFactory,
    clock: Clock,
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    smtp_server.stop()
    row_id = add(sessions, "email", "wang@dmd.edu.cn", clock)
    config = NotifyConfig(max_attempts=3)
    d = dispatcher(sessions, clock, config, host=smtp_server.host, port=smtp_server.port)

    clock.advance(90)
    samples = list(d.samples())
    assert sample(samples, "syncclass_notifications", channel="email", status="pending") == 1
    assert sample(samples, "syncclass_notification_oldest_pending_seconds") == 90

    with caplog.at_level(logging.WARNING, logger="fleet.notify.dispatcher"):
        for _ in range(3):
            assert d.run_due() == 1
            clock.advance(3600)
        assert d.run_due() == 0
    row = load(sessions, row_id)
    assert (row.status, row.attempts) == (NotificationStatus.FAILED, 3)
    assert row.last_error is not None and "ConnectionRefused" in row.last_error
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "FAILED after 3 attempts" in errors[0].getMessage()

    with session_scope(sessions) as session:
        assert [n.id for n in failed_notifications(session, since=T0)] == [row_id]
        assert failed_notifications(session, since=T0 + timedelta(seconds=1)) == []
    samples = list(d.samples())
    assert sample(samples, "syncclass_notifications", channel="email", status="failed") == 1
    assert sample(samples, "syncclass_notifications", channel="email", status="pending") == 0
    assert (
        sample(samples, "syncclass_notification_attempts_total", channel="email", outcome="failed")
        == 1
    )


def test_dingtalk_wrong_secret_fails_at_once(
    sessions: SessionFactory, clock: Clock, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.state.dingtalk_secret = "SECright"
    webhook_receiver.state.clock = clock
    url = webhook_receiver.url("/dingtalk/robot/send?access_token=t")
    bad = add(sessions, "dingtalk", url, clock, payload={"secret": "SECwrong"})
    good = add(sessions, "dingtalk", url, clock, payload={"secret": "SECright"})
    d = dispatcher(sessions, clock)
    assert d.run_due() == 2
    row = load(sessions, bad)
    assert (row.status, row.attempts) == (NotificationStatus.FAILED, 1)
    assert row.last_error is not None and "310000" in row.last_error
    assert load(sessions, good).status is NotificationStatus.SENT


def test_wecom_refusal_for_speed_waits_out_the_throttle_for_every_row_to_the_robot(
    sessions: SessionFactory, clock: Clock, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.errcode_next(1, 45009, "api freq out of limit")
    url = webhook_receiver.url("/wecom/cgi-bin/webhook/send?key=k")
    row_id = add(sessions, "wecom", url, clock)
    d = dispatcher(sessions, clock)
    d.run_due()
    row = load(sessions, row_id)
    assert row.status is NotificationStatus.PENDING
    # WeCom's throttle (a minute), not the 30 s backoff of an ordinary failure.
    assert row.next_attempt_at == T0 + timedelta(seconds=60)
    later = add(sessions, "wecom", url, clock)  # queued meanwhile: it waits too
    clock.advance(30)
    assert d.run_due() == 0
    clock.advance(30)
    assert d.run_due() == 2
    assert {load(sessions, i).status for i in (row_id, later)} == {NotificationStatus.SENT}
    assert [r.accepted for r in webhook_receiver.requests] == [False, True, True]


def test_unconfigured_channel_fails_visibly(sessions: SessionFactory, clock: Clock) -> None:
    row_id = add(sessions, "wecom", "http://127.0.0.1:9/x", clock)
    d = Dispatcher(sessions, {}, NotifyConfig(), clock)
    assert d.run_due() == 1
    row = load(sessions, row_id)
    assert row.status is NotificationStatus.FAILED
    assert row.last_error is not None and "not configured" in row.last_error


class Crashing(Channel):
    def send(self, message: Outgoing) -> None:
        raise KeyError("bug")


def test_channel_bug_is_retried_not_lost(sessions: SessionFactory, clock: Clock) -> None:
    row_id = add(sessions, "webhook", "http://127.0.0.1:9/x", clock)
    assert Dispatcher(sessions, {"webhook": Crashing()}, NotifyConfig(), clock).run_due() == 1
    row = load(sessions, row_id)
    assert row.status is NotificationStatus.PENDING
    assert row.last_error == "KeyError: 'bug'"


def test_requeue_after_fixing_the_target(
    sessions: SessionFactory, clock: Clock, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.fail_next(1, 404)
    row_id = add(sessions, "webhook", webhook_receiver.url("/hook"), clock)
    d = dispatcher(sessions, clock)
    d.run_due()
    assert load(sessions, row_id).status is NotificationStatus.FAILED
    with session_scope(sessions) as session:
        requeue(session, row_id, clock())
    with pytest.raises(ValueError, match="not failed"), session_scope(sessions) as session:
        requeue(session, row_id, clock())
    with pytest.raises(LookupError), session_scope(sessions) as session:
        requeue(session, 999, clock())
    d.run_due()
    assert load(sessions, row_id).status is NotificationStatus.SENT


# ---------------------------------------------------------------- two dispatchers


class Racing(Channel):
    """Lets a second dispatcher run while the first one is mid-delivery."""

    def __init__(self, inner: Channel, rival: list[Dispatcher], seen: list[int]) -> None:
        self.inner, self.rival, self.seen = inner, rival, seen

    def send(self, message: Outgoing) -> None:
        self.seen.append(self.rival[0].run_due())
        self.inner.send(message)


def test_claimed_row_is_not_sent_by_a_second_dispatcher(
    sessions: SessionFactory, clock: Clock, webhook_receiver: WebhookReceiver
) -> None:
    row_id = add(sessions, "webhook", webhook_receiver.url("/hook"), clock)
    rival: list[Dispatcher] = []
    seen: list[int] = []
    first = Dispatcher(
        sessions, {"webhook": Racing(WebhookChannel(), rival, seen)}, NotifyConfig(), clock
    )
    rival.append(Dispatcher(sessions, {"webhook": WebhookChannel()}, NotifyConfig(), clock))
    assert first.run_due() == 1
    assert seen == [0]
    assert len(webhook_receiver.requests) == 1
    assert load(sessions, row_id).status is NotificationStatus.SENT


class Dying(Channel):
    def send(self, message: Outgoing) -> None:
        raise SystemExit("power cut mid-delivery")


def test_dispatcher_dying_mid_delivery_leaves_the_row_to_another_after_the_lease(
    sessions: SessionFactory, clock: Clock, webhook_receiver: WebhookReceiver
) -> None:
    row_id = add(sessions, "webhook", webhook_receiver.url("/hook"), clock)
    config = NotifyConfig()
    with pytest.raises(SystemExit):
        Dispatcher(sessions, {"webhook": Dying()}, config, clock).run_due()
    survivor = Dispatcher(sessions, {"webhook": WebhookChannel()}, config, clock)
    assert survivor.run_due() == 0
    clock.advance(config.lease_s)
    assert survivor.run_due() == 1
    row = load(sessions, row_id)
    assert (row.status, row.attempts) == (NotificationStatus.SENT, 2)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_dispatchers_in_parallel_deliver_each_message_once(
    backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    webhook_receiver: WebhookReceiver,
) -> None:
    factories = two_processes(backend, tmp_path, request)
    clock = Clock(datetime.now(UTC))
    ids = [add(factories[0], "webhook", webhook_receiver.url("/hook"), clock) for _ in range(40)]
    dispatchers = [
        Dispatcher(f, {"webhook": WebhookChannel()}, NotifyConfig(batch_size=40), clock)
        for f in factories
    ]
    counts: list[int] = []
    threads = [threading.Thread(target=lambda d=d: counts.append(d.run_due())) for d in dispatchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert sum(counts) == 40
        deliveries = Counter(r.headers["x-syncclass-delivery"] for r in webhook_receiver.requests)
        assert deliveries == Counter({str(i): 1 for i in ids})
    finally:
        with session_scope(factories[0]) as session:
            session.execute(delete(Notification))
        for f in factories:
            f.kw["bind"].dispose()


def test_run_loop_delivers_until_stopped(
    sessions: SessionFactory, webhook_receiver: WebhookReceiver
) -> None:
    add(sessions, "webhook", webhook_receiver.url("/hook"), Clock(datetime.now(UTC)))
    d = Dispatcher(sessions, {"webhook": WebhookChannel()}, NotifyConfig(poll_interval_s=0.05))
    stop = threading.Event()
    loop = threading.Thread(target=d.run, args=(stop,))
    loop.start()
    try:
        assert wait_until(lambda: bool(webhook_receiver.requests)), "the loop delivered"
    finally:
        stop.set()
        loop.join(5)
    assert not loop.is_alive()
    assert len(webhook_receiver.requests) == 1


def test_wake_delivers_without_waiting_for_the_poll(
    sessions: SessionFactory, clock: Clock, smtp_server: SmtpServer
) -> None:
    # With an hour's poll, only the first pass and a wake can deliver within this test.
    d = dispatcher(sessions, clock, NotifyConfig(poll_interval_s=3600),
                   host=smtp_server.host, port=smtp_server.port)
    add(sessions, "email", "first@dmd.edu.cn", clock)
    stop = threading.Event()
    runner = threading.Thread(target=d.run, args=(stop,), daemon=True)
    runner.start()
    try:
        assert wait_until(lambda: len(smtp_server.messages) == 1), "first pass delivered"
        add(sessions, "email", "second@dmd.edu.cn", clock)
        d.wake()
        assert wait_until(lambda: len(smtp_server.messages) == 2), "wake delivered"
    finally:
        stop.set()
        d.wake()
        runner.join(timeout=10)
    assert not runner.is_alive(), "stop + wake must end the loop"
