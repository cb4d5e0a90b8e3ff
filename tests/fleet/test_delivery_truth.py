"""Delivery truth end to end: the real alert engine over the demo pilot, the real
dispatcher, real SMTP (aiosmtpd) and the real DingTalk stand-in, seen through the API.

A permanent SMTP refusal is a failed delivery with its reason on the alert, never
"notified"; the school's robot carries the alert instead and the fallback is shown; no
"已恢复" goes to the mailbox that never got the alert; a technician no route reached
makes the county hear of it through the engine's escalation; failed deliveries are
listed within each person's scope."""

from __future__ import annotations

from typing import Any

from fleet.notify import Dispatcher
from tests.fleet.api_world import World, world
from tests.fleet.delivery_helpers import (
    COUNTY,
    DEVICE,
    REFUSAL,
    TECH,
    dispatcher,
    give_robot,
    settle,
)
from tests.fleet.smtp import SmtpServer
from tests.fleet.webhook_receiver import WebhookReceiver

__all__ = ["world"]

def detail(world: World, alert_id: int, who: str = "dt-luxi-tech") -> dict[str, Any]:
    reply = world.get(who, f"/api/v1/alerts/{alert_id}")
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def recover(world: World, outbox: Dispatcher) -> None:
    world.status(DEVICE, "online", session_no=2)
    settle(world, outbox, 61)  # the down-delay
    settle(world, outbox)  # group_wait of the recovery


def to(smtp: SmtpServer, address: str) -> list[str]:
    return [str(m.message["Subject"]) for m in smtp.messages if address in m.rcpt_tos]


def test_a_refused_mailbox_is_a_failed_delivery_the_robot_carries_and_no_recovery_mail(
    world: World, smtp_server: SmtpServer, webhook_receiver: WebhookReceiver
) -> None:
    give_robot(world, webhook_receiver)
    smtp_server.refuse(TECH, REFUSAL)
    outbox = dispatcher(world, smtp_server)
    alert_id = world.take_offline(DEVICE)
    settle(world, outbox)

    body = detail(world, alert_id)
    by_channel = {d["channel"]: d for d in body["deliveries"]}
    mail, robot = by_channel["email"], by_channel["dingtalk"]
    assert (mail["kind"], mail["target"], mail["state"]) == ("firing", TECH, "failed")
    assert "550" in mail["error"] and "mailbox unavailable" in mail["error"]
    assert mail["attempts"] == 1  # permanent: not retried
    assert (robot["state"], robot["kind"]) == ("sent", "firing")
    assert robot["target"].endswith("/dingtalk/robot/send?…")  # the token is not shown
    assert mail["fallbacks"] == [robot["id"]]  # the person's other route carried it
    assert [r.accepted for r in webhook_receiver.requests] == [True]

    # The history tells the truth, in order: queued to two, then each fate.
    kinds = [(e["kind"], e["text"]) for e in body["events"]]
    assert not any(k == "notified" for k, _ in kinds)
    queued = next(t for k, t in kinds if k == "queued")
    assert "queued to 2" in queued and TECH in queued
    failed = next(t for k, t in kinds if k == "delivery_failed")
    assert TECH in failed and "550" in failed and "fell back to: dingtalk" in failed
    assert any(k == "sent" and "dingtalk" in t for k, t in kinds)
    # The robot reached the technician, so nothing escalates.
    assert body["escalation_level"] == 0

    # The mailbox works again; the device recovers: "已恢复" only where the alert arrived.
    smtp_server.accept(TECH)
    recover(world, outbox)
    body = detail(world, alert_id)
    assert body["state"] == "resolved"
    resolved = [(d["channel"], d["state"]) for d in body["deliveries"] if d["kind"] == "resolved"]
    assert resolved == [("dingtalk", "sent")]
    assert to(smtp_server, TECH) == []
    assert [r.accepted for r in webhook_receiver.requests] == [True, True]
    assert "已恢复" in webhook_receiver.requests[1].json["markdown"]["title"]
    skipped = [e["text"] for e in body["events"] if e["kind"] == "recovery_skipped"]
    assert len(skipped) == 1 and TECH in skipped[0]


def test_a_technician_no_route_reaches_escalates_to_the_county_who_alone_hears_the_recovery(
    world: World, smtp_server: SmtpServer
) -> None:
    # The demo school has no robot: the technician's e-mail is the only route.
    smtp_server.refuse(TECH, REFUSAL)
    outbox = dispatcher(world, smtp_server)
    alert_id = world.take_offline(DEVICE)
    settle(world, outbox)

    body = detail(world, alert_id)
    assert body["escalation_level"] == 1  # long before the 15 minutes of no acknowledgement
    escalated = [e["text"] for e in body["events"] if e["kind"] == "escalated"]
    assert len(escalated) == 1 and "no route reached" in escalated[0] and "550" in escalated[0]

    settle(world, outbox)  # the escalation's group_wait
    got = to(smtp_server, COUNTY)
    assert len(got) == 1 and "升级" in got[0]
    deliveries = detail(world, alert_id)["deliveries"]
    assert [(d["kind"], d["target"], d["state"]) for d in deliveries] == [
        ("firing", TECH, "failed"),
        ("escalation", TECH, "failed"),
        ("escalation", COUNTY, "sent"),
    ]

    smtp_server.accept(TECH)
    recover(world, outbox)
    assert to(smtp_server, TECH) == []
    got = to(smtp_server, COUNTY)
    assert len(got) == 2 and "已恢复" in got[1]


def test_failed_deliveries_are_listed_within_each_persons_scope(
    world: World, smtp_server: SmtpServer
) -> None:
    smtp_server.refuse(TECH, REFUSAL)
    outbox = dispatcher(world, smtp_server)
    alert_id = world.take_offline(DEVICE)
    settle(world, outbox)
    settle(world, outbox)  # the escalation: the technician's copy fails, the county's goes

    def failed(who: str) -> list[tuple[str, str, list[int]]]:
        reply = world.get(who, "/api/v1/notifications", params={"status": "failed"})
        assert reply.status_code == 200, reply.text
        return [(d["kind"], d["target"], d["alert_ids"]) for d in reply.json()]

    expected = [("escalation", TECH, [alert_id]), ("firing", TECH, [alert_id])]  # newest first
    assert failed("dt-luxi-tech") == expected
    assert failed("dt-dianjiao") == expected  # the county's technician
    assert failed("admin") == expected
    assert failed("yq-dianjiao") == []  # another county
    assert failed("dt-shiyan-tech") == []  # another school of the same county
    assert world.get("yq-dianjiao", f"/api/v1/alerts/{alert_id}/deliveries").status_code == 404
    own = world.get("dt-luxi-tech", f"/api/v1/alerts/{alert_id}/deliveries").json()
    assert [d["state"] for d in own] == ["failed", "failed", "sent"]
    sent = world.get("dt-dianjiao", "/api/v1/notifications", params={"status": "sent"}).json()
    assert [(d["kind"], d["target"]) for d in sent] == [("escalation", COUNTY)]
    bad = world.get("admin", "/api/v1/notifications", params={"status": "lost"})
    assert bad.status_code == 422  # an unknown status is named, not an empty list


def test_a_notice_carried_in_a_digest_shows_the_digest_on_its_alert(
    world: World, smtp_server: SmtpServer
) -> None:
    # Both 洞头 classrooms go down; nobody acknowledges; after 15 minutes both escalate to
    # the county's 电教 contact, whose mailbox takes one message a minute here: one digest.
    outbox = dispatcher(world, smtp_server, per_mailbox=1)
    other = world.take_offline("dongtou-shiyan-sync1")
    alert_id = world.take_offline(DEVICE)
    settle(world, outbox)
    settle(world, outbox, 900)  # escalated, queued
    settle(world, outbox)  # group_wait: two escalations owed to one mailbox with one slot

    [digest] = to(smtp_server, COUNTY)
    assert "汇总" in digest
    for alert in (other, alert_id):
        [county] = [d for d in detail(world, alert, "dt-dianjiao")["deliveries"]
                    if d["target"] == COUNTY]
        assert (county["kind"], county["state"]) == ("escalation", "sent")
        assert county["digest_id"] is not None
        events = detail(world, alert, "dt-dianjiao")["events"]
        assert any(e["kind"] == "sent" and COUNTY in e["text"]
                   and f"digest #{county['digest_id']}" in e["text"] for e in events)


def test_queued_then_retrying_while_the_relay_is_down_and_nothing_said_sent(
    world: World, smtp_server: SmtpServer
) -> None:
    outbox = dispatcher(world, smtp_server)
    alert_id = world.take_offline(DEVICE)
    world.clock.advance(31)
    world.alerts.tick()  # queued, not yet attempted
    [queued] = detail(world, alert_id)["deliveries"]
    assert (queued["state"], queued["attempts"], queued["error"]) == ("queued", 0, None)

    smtp_server.stop()  # the county relay is down: a temporary failure, retried later
    outbox.run_due()
    world.alerts.tick()
    body = detail(world, alert_id)
    [retrying] = body["deliveries"]
    assert (retrying["state"], retrying["attempts"]) == ("retrying", 1)
    assert "Connection" in retrying["error"]
    kinds = [e["kind"] for e in body["events"]]
    assert "queued" in kinds and "sent" not in kinds and "delivery_failed" not in kinds
    assert body["escalation_level"] == 0  # a retry may still reach them
