"""Each target's documented rate limit, kept before sending: digests when more is owed
than the target takes, throttles waited out, fallback to the people's other channels,
one Message-ID per e-mail across a crash; against the robot receiver that enforces the
documented limits and the real SMTP server."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select

from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import Notification, NotificationStatus, NotifySlot, NotifyTarget
from fleet.notify import Dispatcher, NotifyConfig, build_channels
from fleet.notify.base import Channel, Outgoing
from fleet.notify.config import EmailConfig, RateLimit
from fleet.notify.email import EmailChannel
from fleet.notify.outbox import failed_notifications, requeue
from tests.clock import ManualClock
from tests.fleet.notify_helpers import T0, add, load, sample, two_processes
from tests.fleet.smtp import SmtpServer
from tests.fleet.webhook_receiver import WebhookReceiver

DINGTALK = "/dingtalk/robot/send?access_token=county"
WECOM = "/wecom/cgi-bin/webhook/send?key=county"
LIN = "lin@luxi.example.cn"
MARKDOWN = {"msgtype": "markdown", "markdown": {"title": "t", "text": "另一个系统 other"}}


def dispatcher(
    sessions: SessionFactory, clock: ManualClock, smtp: SmtpServer | None = None,
    config: NotifyConfig | None = None,
) -> Dispatcher:
    config = config or NotifyConfig()
    if smtp is not None:
        config.email = EmailConfig(host=smtp.host, port=smtp.port, sender="ops@dongtou.edu.cn")
    return Dispatcher(sessions, build_channels(config, clock), config, clock)


def robot(receiver: WebhookReceiver, clock: ManualClock, path: str = DINGTALK) -> str:
    receiver.state.clock = clock  # the robot counts its minute on the test's clock
    return receiver.url(path)


def rows(sessions: SessionFactory) -> list[Notification]:
    with session_scope(sessions) as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


def texts(receiver: WebhookReceiver) -> list[str]:
    return [r.json["markdown"]["text"] for r in receiver.requests]


# ---------------------------------------------------------------- the receiver itself


def test_receiver_keeps_dingtalks_limit_and_ten_minute_throttle(
    webhook_receiver: WebhookReceiver, clock: ManualClock
) -> None:
    url = robot(webhook_receiver, clock)
    answers = [httpx.post(url, json=MARKDOWN).json()["errcode"] for _ in range(21)]
    assert answers == [0] * 20 + [130101]
    clock.advance(61)  # the minute is over, the throttle is not
    assert httpx.post(url, json=MARKDOWN).json()["errcode"] == 130101
    other = webhook_receiver.url("/dingtalk/robot/send?access_token=school")
    assert httpx.post(other, json=MARKDOWN).json()["errcode"] == 0  # per robot
    clock.set(T0 + timedelta(seconds=600))
    assert httpx.post(url, json=MARKDOWN).json()["errcode"] == 0


def test_receiver_keeps_wecoms_limit_per_minute(
    webhook_receiver: WebhookReceiver, clock: ManualClock
) -> None:
    url = robot(webhook_receiver, clock, WECOM)
    body = {"msgtype": "markdown", "markdown": {"content": "other"}}
    answers = [httpx.post(url, json=body).json()["errcode"] for _ in range(21)]
    assert answers == [0] * 20 + [45009]
    clock.advance(60)
    assert httpx.post(url, json=body).json()["errcode"] == 0


# ---------------------------------------------------------------- limit and digest


def test_more_owed_than_free_slots_goes_as_one_digest_most_urgent_first(
    sessions: SessionFactory, clock: ManualClock, webhook_receiver: WebhookReceiver
) -> None:
    url = robot(webhook_receiver, clock)
    for _ in range(18):
        add(sessions, "dingtalk", url, clock)
    d = dispatcher(sessions, clock)
    assert d.run_due() == 18
    lesson = T0 + timedelta(minutes=30)
    owed = [  # (severity, lesson minutes from now, classroom)
        ("warning", 10, "一班"), ("critical", 40, "二班"), ("info", None, "三班"),
        ("critical", 5, "四班"), ("warning", None, "五班"),
    ]
    ids = {}
    for n, (severity, minutes, room) in enumerate(owed):
        payload: dict[str, Any] = {
            "severity": severity, "classroom_id": n + 1, "alert_ids": [n + 1],
            "lesson_at": None if minutes is None else (lesson + timedelta(minutes=minutes))
            .isoformat(),
            "alerts_url": "https://fleet.example.cn/#alerts",
        }
        ids[room] = add(sessions, "dingtalk", url, clock, subject=f"【告警】{room} 故障",
                        payload=payload)
    assert d.run_due() == 1  # two slots were free: all five notices in one message
    assert len(webhook_receiver.requests) == 19
    assert all(r.accepted for r in webhook_receiver.requests)
    digest = texts(webhook_receiver)[-1]
    assert "5 间教室告警 / [Digest] 5 classrooms alerting" in digest
    urgent_first = ("四班", "二班", "一班", "五班", "三班")
    order = [digest.index(f"【告警】{room} 故障") for room in urgent_first]
    assert order == sorted(order)  # critical, then warning, then info; sooner lessons first
    assert "全部告警 / all alerts: https://fleet.example.cn/#alerts" in digest
    [carrier] = [r for r in rows(sessions) if r.kind == "digest"]
    assert carrier.status is NotificationStatus.SENT
    for row_id in ids.values():
        row = load(sessions, row_id)
        assert (row.status, row.digest_id, row.sent_at) == (
            NotificationStatus.SENT, carrier.id, T0)


def test_with_no_slot_left_a_notice_waits_for_the_first_to_leave_the_window(
    sessions: SessionFactory, clock: ManualClock, webhook_receiver: WebhookReceiver
) -> None:
    url = robot(webhook_receiver, clock)
    for _ in range(20):
        add(sessions, "dingtalk", url, clock)
    d = dispatcher(sessions, clock)
    assert d.run_due() == 20
    clock.advance(30)
    late = add(sessions, "dingtalk", url, clock)
    assert d.run_due() == 0
    reopens = T0 + timedelta(seconds=60, milliseconds=1)  # the first slot has left the window
    assert load(sessions, late).next_attempt_at == reopens
    assert (load(sessions, late).attempts, len(webhook_receiver.requests)) == (0, 20)
    clock.set(reopens)
    assert d.run_due() == 1
    assert load(sessions, late).status is NotificationStatus.SENT
    assert all(r.accepted for r in webhook_receiver.requests)


def test_notices_that_do_not_fit_a_wecom_message_go_in_the_next_one_never_cut(
    sessions: SessionFactory, clock: ManualClock, webhook_receiver: WebhookReceiver
) -> None:
    url = robot(webhook_receiver, clock, WECOM)
    long_subject = "【告警】鹿西乡小学 三(1)班：摄像头未连接 / [Firing] camera missing " * 2
    ids = [add(sessions, "wecom", url, clock, subject=f"{n} {long_subject}") for n in range(60)]
    messages = dispatcher(sessions, clock).run_due()
    contents = [r.json["markdown"]["content"] for r in webhook_receiver.requests]
    assert 1 < messages == len(contents) < 60
    assert not any("truncated" in c for c in contents)  # 4096 bytes are never exceeded
    assert {load(sessions, i).status for i in ids} == {NotificationStatus.SENT}
    assert all(r.accepted for r in webhook_receiver.requests)
    told = "\n".join(contents)
    assert all(f"{n} {long_subject}" in told for n in range(60))


def test_a_digest_that_waits_is_merged_into_the_next_with_its_notices(
    sessions: SessionFactory, clock: ManualClock, webhook_receiver: WebhookReceiver
) -> None:
    url = robot(webhook_receiver, clock)
    webhook_receiver.state.robot_limit = 2
    config = NotifyConfig()
    config.dingtalk.limit = RateLimit(per_window=2, window_s=60.0, throttle_s=600.0)
    d = dispatcher(sessions, clock, config=config)
    first = [add(sessions, "dingtalk", url, clock, subject=f"【告警】{n}班") for n in (1, 2, 3)]
    webhook_receiver.fail_next(1, 503)
    assert d.run_due() == 1  # three owed, two free: a digest, which the robot drops
    [waiting] = [r for r in rows(sessions) if r.kind == "digest"]
    assert waiting.status is NotificationStatus.PENDING
    clock.set(T0 + timedelta(seconds=30))  # its retry is due, with two more owed
    later = [add(sessions, "dingtalk", url, clock, subject=f"【告警】{n}班") for n in (4, 5)]
    assert d.run_due() == 1  # one slot free (the dropped attempt took the other)
    carriers = [r for r in rows(sessions) if r.kind == "digest"]
    final = carriers[-1]
    assert (final.status, load(sessions, waiting.id).digest_id) == (
        NotificationStatus.SENT, final.id)
    for row_id in first + later:
        assert (load(sessions, row_id).status, load(sessions, row_id).digest_id) == (
            NotificationStatus.SENT, final.id)
    text = texts(webhook_receiver)[-1]
    assert all(f"【告警】{n}班" in text for n in range(1, 6))
    assert "5 间教室告警" in text


class SlowFirst(Channel):
    """The first request hangs for 50 s on the network before it reaches the robot."""

    def __init__(self, inner: Channel, clock: ManualClock) -> None:
        self.inner, self.clock, self.calls = inner, clock, 0

    def send(self, message: Outgoing) -> None:
        self.calls += 1
        if self.calls == 1:
            self.clock.advance(50)
        self.inner.send(message)


def test_a_slot_counts_from_when_the_robot_got_the_request(
    sessions: SessionFactory, clock: ManualClock, webhook_receiver: WebhookReceiver
) -> None:
    url = robot(webhook_receiver, clock)
    for _ in range(20):
        add(sessions, "dingtalk", url, clock)
    config = NotifyConfig()
    slow = SlowFirst(build_channels(config, clock)["dingtalk"], clock)
    d = Dispatcher(sessions, {"dingtalk": slow}, config, clock)
    assert d.run_due() == 20  # the first arrived at T0 + 50 s, the others after it
    clock.set(T0 + timedelta(seconds=61))  # a minute after the first was *claimed*
    late = add(sessions, "dingtalk", url, clock)
    assert d.run_due() == 0  # the robot still counts 20 in its minute
    clock.set(T0 + timedelta(seconds=110, milliseconds=1))
    assert d.run_due() == 1
    assert load(sessions, late).status is NotificationStatus.SENT
    assert all(r.accepted for r in webhook_receiver.requests)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_fleet_processes_share_one_robots_limit(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest,
    webhook_receiver: WebhookReceiver,
) -> None:
    tables = (Notification, NotifySlot, NotifyTarget)
    factories = two_processes(backend, tmp_path, request, *tables)
    clock = ManualClock(datetime.now(UTC))
    target = robot(webhook_receiver, clock)
    processes = [dispatcher(f, clock) for f in factories]
    queued: list[int] = []

    def storm(factory: SessionFactory, d: Dispatcher) -> None:
        for _ in range(15):  # each process queues a notice and delivers, 15 times
            queued.append(add(factory, "dingtalk", target, clock))
            d.run_due()

    threads = [threading.Thread(target=storm, args=pair) for pair in zip(factories, processes,
                                                                        strict=True)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(webhook_receiver.requests) <= 20
        clock.advance(71)  # the window is over: what waited goes now
        processes[0].run_due()
        assert all(r.accepted for r in webhook_receiver.requests), "the robot never refused"
        statuses = {load(factories[0], i).status for i in queued}
        assert len(queued) == 30 and statuses == {NotificationStatus.SENT}
    finally:
        with session_scope(factories[0]) as session:
            for table in tables:
                session.execute(delete(table))
        for f in factories:
            f.kw["bind"].dispose()


# ---------------------------------------------------------------- throttle


def test_a_throttled_dingtalk_robot_is_retried_only_after_its_ten_minutes(
    sessions: SessionFactory, clock: ManualClock, webhook_receiver: WebhookReceiver
) -> None:
    url = robot(webhook_receiver, clock)
    for _ in range(21):  # another system sharing the robot passed its limit
        httpx.post(url, json=MARKDOWN)
    first = add(sessions, "dingtalk", url, clock)
    d = dispatcher(sessions, clock)
    assert d.run_due() == 1
    row = load(sessions, first)
    assert row.last_error is not None and "130101" in row.last_error
    assert row.next_attempt_at == T0 + timedelta(seconds=600)  # not the 30 s backoff
    clock.advance(60)
    second = add(sessions, "dingtalk", url, clock)  # queued meanwhile: waits as well
    seen = len(webhook_receiver.requests)
    clock.set(T0 + timedelta(seconds=599))
    assert d.run_due() == 0
    assert len(webhook_receiver.requests) == seen  # nothing asked of a throttled robot
    clock.set(T0 + timedelta(seconds=600))
    assert d.run_due() == 2
    assert [load(sessions, i).status for i in (first, second)] == [NotificationStatus.SENT] * 2
    assert [r.accepted for r in webhook_receiver.requests[seen:]] == [True, True]


# ---------------------------------------------------------------- fallback


def fallback_to(address: str) -> list[dict[str, Any]]:
    return [{"channel": "email", "target": address, "payload": {}}]


def test_a_robot_refused_for_good_falls_back_to_the_peoples_email_nothing_dropped(
    sessions: SessionFactory, clock: ManualClock, webhook_receiver: WebhookReceiver,
    smtp_server: SmtpServer,
) -> None:
    url = robot(webhook_receiver, clock)
    webhook_receiver.state.dingtalk_secret = "SECnew"  # the school re-keyed its robot
    ids = [
        add(sessions, "dingtalk", url, clock, subject=f"【告警】{n}班 摄像头未连接",
            payload={"secret": "SECold", "classroom_id": n, "fallback": fallback_to(LIN)})
        for n in range(1, 26)
    ]
    d = dispatcher(sessions, clock, smtp_server)
    assert d.run_due() == 1  # 25 owed, 20 free: one digest, refused with 310000
    [refused] = webhook_receiver.requests
    assert not refused.accepted
    # Each notice failed visibly, naming the refusal and where it went instead.
    with session_scope(sessions) as session:
        failed = {n.id: n.last_error or "" for n in failed_notifications(session)}
    for i in ids:
        assert "310000" in failed[i] and f"fell back to: email {LIN}" in failed[i]
    # Lin's mailbox takes ten a minute: the 25 copies come as one e-mail digest.
    assert d.run_due() == 1
    [mail] = smtp_server.messages
    assert mail.rcpt_tos == [LIN]
    assert "25 间教室告警 / [Digest] 25 classrooms alerting" in mail.message["Subject"]
    text = mail.message.get_content()
    assert all(f"【告警】{n}班 摄像头未连接" in text for n in range(1, 26))
    copies = [r for r in rows(sessions) if r.channel == "email" and r.kind != "digest"]
    assert sorted(c.payload["fallback_of"] for c in copies) == ids
    assert {c.status for c in copies} == {NotificationStatus.SENT}
    samples = list(d.samples())
    assert sample(samples, "syncclass_notifications", channel="dingtalk", status="failed") == 26
    assert sample(samples, "syncclass_notification_fallbacks_total", channel="dingtalk") == 25
    assert sample(samples, "syncclass_notification_digests_total", channel="dingtalk") == 1
    assert sample(samples, "syncclass_notification_digests_total", channel="email") == 1
    # Once the robot is fixed, a person requeues the notices, not the digest that carried them.
    [carrier] = [r for r in rows(sessions) if r.channel == "dingtalk" and r.kind == "digest"]
    with pytest.raises(ValueError, match="is a digest"), session_scope(sessions) as session:
        requeue(session, carrier.id, clock())
    with session_scope(sessions) as session:
        requeue(session, ids[0], clock())
    assert (load(sessions, ids[0]).status, load(sessions, ids[0]).digest_id) == (
        NotificationStatus.PENDING, None)


def test_a_robot_that_stays_throttled_falls_back_after_three_refusals(
    sessions: SessionFactory, clock: ManualClock, webhook_receiver: WebhookReceiver,
    smtp_server: SmtpServer,
) -> None:
    url = robot(webhook_receiver, clock)
    webhook_receiver.errcode_next(100, 130101, "send too fast")  # somebody floods it
    row_id = add(sessions, "dingtalk", url, clock, payload={"fallback": fallback_to(LIN)})
    d = dispatcher(sessions, clock, smtp_server)
    for attempt in range(3):
        clock.set(T0 + timedelta(seconds=600 * attempt))
        assert d.run_due() == 1
        if attempt < 2:
            assert load(sessions, row_id).status is NotificationStatus.PENDING
    assert smtp_server.messages == []
    row = load(sessions, row_id)
    assert (row.status, row.attempts) == (NotificationStatus.FAILED, 3)
    assert row.last_error is not None and row.last_error.startswith("DingTalk errcode 130101")
    assert d.run_due() == 1
    [mail] = smtp_server.messages
    assert mail.message["Subject"] == "【告警】三(2)班 摄像头缺失 camera missing"


def test_no_second_copy_when_the_fallback_already_carries_the_message(
    sessions: SessionFactory, clock: ManualClock, webhook_receiver: WebhookReceiver,
    smtp_server: SmtpServer,
) -> None:
    url = robot(webhook_receiver, clock)
    webhook_receiver.fail_next(1, 404)  # a deleted robot
    robot_row = add(sessions, "dingtalk", url, clock, payload={"fallback": fallback_to(LIN)})
    direct = add(sessions, "email", LIN, clock)
    dispatcher(sessions, clock, smtp_server).run_due()
    row = load(sessions, robot_row)
    assert row.status is NotificationStatus.FAILED
    assert row.last_error is not None and f"#{direct}" in row.last_error
    assert len(smtp_server.messages) == 1 and len(rows(sessions)) == 2


# ---------------------------------------------------------------- one Message-ID


class SentThenDied(Channel):
    """The relay said 250, then the fleet was killed before it recorded the result."""

    def __init__(self, inner: Channel) -> None:
        self.inner = inner

    def send(self, message: Outgoing) -> None:
        self.inner.send(message)
        raise SystemExit("killed after the relay accepted the message")


def test_an_email_resent_after_a_crash_keeps_its_message_id(
    sessions: SessionFactory, clock: ManualClock, smtp_server: SmtpServer
) -> None:
    row_id = add(sessions, "email", LIN, clock)
    config = NotifyConfig()
    email = EmailChannel(EmailConfig(host=smtp_server.host, port=smtp_server.port), clock)
    with pytest.raises(SystemExit):
        Dispatcher(sessions, {"email": SentThenDied(email)}, config, clock).run_due()
    clock.advance(config.lease_s)  # the lease of the dead process runs out
    assert Dispatcher(sessions, {"email": email}, config, clock).run_due() == 1
    first, again = smtp_server.messages
    assert first.message["Message-ID"] == again.message["Message-ID"]
    assert f".notification.{row_id}." in first.message["Message-ID"]
    assert (load(sessions, row_id).status, load(sessions, row_id).attempts) == (
        NotificationStatus.SENT, 2)


def test_limits_are_configurable_for_scaled_time(
    sessions: SessionFactory, clock: ManualClock, webhook_receiver: WebhookReceiver
) -> None:
    url = robot(webhook_receiver, clock)
    webhook_receiver.state.robot_limit, webhook_receiver.state.robot_window_s = 3, 6.0
    config = NotifyConfig()
    config.dingtalk.limit = RateLimit(per_window=3, window_s=6.0, throttle_s=60.0)
    d = dispatcher(sessions, clock, config=config)
    for _ in range(10):
        add(sessions, "dingtalk", url, clock)
        d.run_due()
        clock.advance(1)
    clock.advance(10)
    d.run_due()
    assert {r.status for r in rows(sessions)} == {NotificationStatus.SENT}
    assert all(r.accepted for r in webhook_receiver.requests)
    assert len(webhook_receiver.requests) < 10  # some went together in a digest
