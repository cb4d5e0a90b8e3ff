"""The pilot's outbox wired to real receivers: the dispatcher on aiosmtpd, the 鹿西 school's
group robot on the DingTalk stand-in, and one step of fleet time that lets the engine
queue, the outbox deliver and the engine look at the outcome."""

from __future__ import annotations

from sqlalchemy import select

from fleet.db.base import session_scope
from fleet.db.models import School
from fleet.notify import Dispatcher, NotifyConfig, build_channels
from fleet.notify.config import EmailConfig, RateLimit
from tests.fleet.api_world import World
from tests.fleet.smtp import SmtpServer
from tests.fleet.webhook_receiver import WebhookReceiver

__all__ = ["COUNTY", "DEVICE", "REFUSAL", "SCHOOL", "TECH", "dispatcher", "give_robot", "settle"]

DEVICE = "dongtou-luxi-sync1"
SCHOOL = "洞头区鹿西乡小学"
TECH = "tech@luxi.example.cn"  # dt-luxi-tech, the school's appointed technician
COUNTY = "dianjiao@dongtou.example.cn"  # dt-dianjiao, 洞头区's 电教 contact
REFUSAL = "550 5.1.1 mailbox unavailable"


def dispatcher(world: World, smtp: SmtpServer, per_mailbox: int = 10) -> Dispatcher:
    """The outbox on ``smtp``, taking ``per_mailbox`` messages a minute to one mailbox."""
    config = NotifyConfig()
    config.email = EmailConfig(host=smtp.host, port=smtp.port, sender="ops@dongtou.edu.cn",
                               limit=RateLimit(per_window=per_mailbox, throttle_s=60.0))
    return Dispatcher(world.sessions, build_channels(config, world.clock), config, world.clock)


def give_robot(world: World, receiver: WebhookReceiver) -> str:
    receiver.state.clock = world.clock
    url = receiver.url("/dingtalk/robot/send?access_token=luxi")
    with session_scope(world.sessions) as session:
        school = session.scalars(select(School).where(School.name == SCHOOL)).one()
        school.dingtalk_webhook = url
    return url


def settle(world: World, outbox: Dispatcher, seconds: float = 31) -> None:
    """group_wait passes, the outbox delivers, the engine looks at the outcome."""
    world.clock.advance(seconds)
    world.alerts.tick()
    outbox.run_due()
    world.alerts.tick()
