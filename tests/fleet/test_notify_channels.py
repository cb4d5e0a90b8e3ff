"""Each channel against a real server: aiosmtpd for e-mail, a local HTTP receiver for the
robots and the generic webhook, answering the way the real services do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.header import decode_header
from pathlib import Path

import pytest

from fleet.broker import free_port, make_test_ca
from fleet.config import parse_config
from fleet.notify import dingtalk
from fleet.notify.base import ChannelError, Outgoing, fit_json, truncate_utf8
from fleet.notify.config import EmailConfig, NotifyConfig, WebhookConfig
from fleet.notify.dingtalk import DingTalkChannel, sign
from fleet.notify.email import EmailChannel
from fleet.notify.webhook import WebhookChannel
from fleet.notify.wecom import WeComChannel
from fleet.settings import ConfigError, section
from tests.fleet.smtp import SmtpServer
from tests.fleet.webhook_receiver import WebhookReceiver

NOW = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)  # 09:30 in Zhejiang
SUBJECT = "【告警 Alert】二年级数学 10:00 · 大门岛小学: 摄像头缺失 camera missing"
BODY = "课程 Lesson: 二年级数学 10:00–10:40\n教室 Classroom: 三(2)班\n故障 Fault: 摄像头缺失"


def message(target: str, **extra: object) -> Outgoing:
    fields: dict[str, object] = {
        "id": 7,
        "channel": "x",
        "target": target,
        "kind": "firing",
        "subject": SUBJECT,
        "body": BODY,
        "alert_id": 3,
        "payload": {},
    }
    fields.update(extra)
    return Outgoing(**fields)  # type: ignore[arg-type]


def email_channel(server: SmtpServer, **extra: object) -> EmailChannel:
    config = EmailConfig(
        host=server.host, port=server.port, sender="同步课堂运维 <ops@dongtou.edu.cn>"
    )
    for key, value in extra.items():
        setattr(config, key, value)
    return EmailChannel(config, clock=lambda: NOW)


# ---------------------------------------------------------------- e-mail


def test_email_reaches_smtp_server_with_chinese_subject_decoded(smtp_server: SmtpServer) -> None:
    email_channel(smtp_server).send(message("王老师 <wang@dmd.edu.cn>"))

    [got] = smtp_server.messages
    assert got.rcpt_tos == ["wang@dmd.edu.cn"]
    assert got.mail_from == "ops@dongtou.edu.cn"
    mail = got.message
    assert mail["Subject"] == SUBJECT
    assert str(mail["To"]) == "王老师 <wang@dmd.edu.cn>"
    assert mail["X-Syncclass-Notification"] == "7"
    assert mail["X-Syncclass-Alert"] == "3"
    assert mail.get_content().strip() == BODY
    assert mail.get_content_charset() == "utf-8"


def test_email_headers_on_the_wire_are_pure_ascii_encoded_words(smtp_server: SmtpServer) -> None:
    email_channel(smtp_server).send(message("wang@dmd.edu.cn"))
    raw = smtp_server.messages[0].message.as_bytes()
    head = raw.split(b"\n\n", 1)[0]
    head.decode("ascii")  # raises if a raw UTF-8 byte slipped into a header
    raw_subject = smtp_server.messages[0].message.get("Subject")
    decoded = "".join(
        part.decode(enc or "ascii") if isinstance(part, bytes) else part
        for part, enc in decode_header(str(raw_subject))
    )
    assert decoded == SUBJECT


def test_email_message_id_is_the_notifications_own_on_every_attempt(
    smtp_server: SmtpServer,
) -> None:
    channel = email_channel(smtp_server)
    created = NOW - timedelta(minutes=2)
    channel.send(message("wang@dmd.edu.cn", created_at=created))
    channel.send(message("wang@dmd.edu.cn", created_at=created))  # a resend of row 7
    channel.send(message("wang@dmd.edu.cn", id=8, created_at=created))
    first, again, other = (m.message["Message-ID"] for m in smtp_server.messages)
    assert first == again
    assert first.startswith("<syncclass.notification.7.") and first.endswith("@dongtou.edu.cn>")
    assert other != first


def test_email_unknown_mailbox_is_a_permanent_error(smtp_server: SmtpServer) -> None:
    smtp_server.refuse("gone@dmd.edu.cn")
    with pytest.raises(ChannelError, match="550") as err:
        email_channel(smtp_server).send(message("gone@dmd.edu.cn"))
    assert err.value.retryable is False
    assert smtp_server.messages == []


def test_email_temporary_refusal_is_retryable(smtp_server: SmtpServer) -> None:
    smtp_server.refuse("busy@dmd.edu.cn", "451 4.2.0 Mailbox busy, try later")
    with pytest.raises(ChannelError, match="451") as err:
        email_channel(smtp_server).send(message("busy@dmd.edu.cn"))
    assert err.value.retryable is True


def test_email_server_down_is_retryable() -> None:
    channel = EmailChannel(EmailConfig(host="127.0.0.1", port=free_port(), timeout_s=2))
    with pytest.raises(ChannelError, match="ConnectionRefused") as err:
        channel.send(message("wang@dmd.edu.cn"))
    assert err.value.retryable is True


def test_email_bad_address_is_permanent_and_never_connects(smtp_server: SmtpServer) -> None:
    with pytest.raises(ChannelError, match="not an e-mail address") as err:
        email_channel(smtp_server).send(message("王老师"))
    assert err.value.retryable is False
    assert smtp_server.messages == []


def test_email_subject_line_break_cannot_inject_headers(smtp_server: SmtpServer) -> None:
    email_channel(smtp_server).send(message("wang@dmd.edu.cn", subject="告警\nBcc: evil@x.cn"))
    [got] = smtp_server.messages
    assert got.rcpt_tos == ["wang@dmd.edu.cn"]
    assert got.message["Bcc"] is None
    assert got.message["Subject"] == "告警 Bcc: evil@x.cn"


def test_email_starttls_and_login(tmp_path: Path) -> None:
    tls = make_test_ca(tmp_path / "tls")
    server = SmtpServer(tls=tls, users={"ops": "s3cret-pass"}).start()
    try:
        secure = {"starttls": True, "username": "ops", "ca_file": tls.ca_file}
        email_channel(server, **secure, password="s3cret-pass").send(message("wang@dmd.edu.cn"))
        assert [m.rcpt_tos for m in server.messages] == [["wang@dmd.edu.cn"]]

        with pytest.raises(ChannelError, match="535") as err:
            email_channel(server, **secure, password="guess").send(message("wang@dmd.edu.cn"))
        assert err.value.retryable is False

        untrusted = {**secure, "ca_file": None}
        with pytest.raises(ChannelError, match="certificate") as err:
            email_channel(server, **untrusted, password="s3cret-pass").send(message("w@x.cn"))
        assert err.value.retryable is False

        with pytest.raises(ChannelError, match="530") as err:  # plain text to a TLS-only relay
            email_channel(server).send(message("wang@dmd.edu.cn"))
        assert err.value.retryable is False
        assert len(server.messages) == 1
    finally:
        server.stop()


@pytest.mark.parametrize("offers_auth", [False, True], ids=["no-auth-offered", "auth-refused"])
@pytest.mark.parametrize("password", ["", None, "left-over"])
def test_email_with_an_empty_username_never_tries_auth(
    offers_auth: bool, password: str | None
) -> None:
    # A relay that does not offer AUTH (smtplib would fail "not supported"), or one that
    # offers it and refuses every login (535), but takes mail from the fleet's host.
    server = SmtpServer(users={"ops": "s3cret-pass"} if offers_auth else None,
                        auth_required=False).start()
    try:
        email_channel(server, username="", password=password).send(message("wang@dmd.edu.cn"))
        assert [m.rcpt_tos for m in server.messages] == [["wang@dmd.edu.cn"]]
        assert server.auth_attempts == []
        if offers_auth:  # the relay does refuse a login: the test would see one tried
            with pytest.raises(ChannelError, match="535"):
                email_channel(server, username="nobody", password="x").send(message("w@x.cn"))
            assert server.auth_attempts and set(server.auth_attempts) == {"nobody"}
        else:
            with pytest.raises(ChannelError, match="AUTH"):
                email_channel(server, username="ops", password="x").send(message("w@x.cn"))
        assert len(server.messages) == 1
    finally:
        server.stop()


def test_email_config_refuses_contradictions() -> None:
    with pytest.raises(ValueError, match="exclude"):
        EmailConfig(ssl=True, starttls=True)
    with pytest.raises(ValueError, match="together"):
        EmailConfig(username="ops")
    with pytest.raises(ValueError, match="ASCII"):
        EmailConfig(username="ops", password="口令")
    # ``username = ""`` left in a config file: no AUTH, with or without a password line.
    assert (EmailConfig(username="").username, EmailConfig(username="").password) == (None, None)
    assert EmailConfig(username="", password="x").password is None
    read = parse_config({"notify": {"email": {"username": "", "password": "x"}}}).notify.email
    assert (read.username, read.password) == (None, None)


# ---------------------------------------------------------------- DingTalk


def test_dingtalk_sign_matches_documented_algorithm() -> None:
    # The documented recipe: HmacSHA256(key=secret, msg=timestamp+"\n"+secret), base64.
    import base64
    import hashlib
    import hmac

    secret, ts = "SEC0123456789abcdef", "1772415000000"
    expected = base64.b64encode(
        hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
    ).decode()
    assert sign(secret, ts) == expected


def test_dingtalk_signed_markdown_accepted(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.state.dingtalk_secret = "SECgroup"
    url = webhook_receiver.url("/dingtalk/robot/send?access_token=tok123")
    channel = DingTalkChannel(clock=lambda: NOW)
    webhook_receiver.state.clock = lambda: NOW + timedelta(seconds=3)

    channel.send(message(url, payload={"secret": "SECgroup", "at_mobiles": ["13800000001"]}))

    [req] = webhook_receiver.requests
    assert req.accepted
    assert req.query["access_token"] == "tok123"
    assert req.query["timestamp"] == str(int(NOW.timestamp() * 1000))
    body = req.json
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == SUBJECT
    assert "摄像头缺失" in body["markdown"]["text"]
    assert "@13800000001" in body["markdown"]["text"]
    assert body["at"]["atMobiles"] == ["13800000001"]
    assert "SECgroup" not in req.raw.decode()


def test_dingtalk_wrong_secret_refused_with_310000_not_retryable(
    webhook_receiver: WebhookReceiver,
) -> None:
    webhook_receiver.state.dingtalk_secret = "SECgroup"
    webhook_receiver.state.clock = lambda: NOW
    url = webhook_receiver.url("/dingtalk/robot/send?access_token=tok123")
    with pytest.raises(ChannelError, match=r"310000.*sign not match") as err:
        DingTalkChannel(clock=lambda: NOW).send(message(url, payload={"secret": "SECwrong"}))
    assert err.value.retryable is False
    with pytest.raises(ChannelError, match="310000"):  # unsigned to a signed robot
        DingTalkChannel(clock=lambda: NOW).send(message(url))


def test_dingtalk_fleet_clock_off_by_hours_refused(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.state.dingtalk_secret = "SECgroup"
    webhook_receiver.state.clock = lambda: NOW
    url = webhook_receiver.url("/dingtalk/robot/send?access_token=tok123")
    late = DingTalkChannel(clock=lambda: NOW - timedelta(hours=2))
    with pytest.raises(ChannelError, match="invalid timestamp"):
        late.send(message(url, payload={"secret": "SECgroup"}))


def test_dingtalk_rate_limit_is_a_throttle(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.errcode_next(1, 130101, "send too fast, exceed 20 times per minute")
    url = webhook_receiver.url("/dingtalk/robot/send?access_token=t")
    with pytest.raises(ChannelError, match="130101") as err:
        DingTalkChannel().send(message(url))
    assert (err.value.retryable, err.value.throttled) == (True, True)


def test_dingtalk_long_body_truncated_to_20000_bytes(webhook_receiver: WebhookReceiver) -> None:
    url = webhook_receiver.url("/dingtalk/robot/send?access_token=t")
    long_body = '摄像头"缺失"\n' * 3000  # ~48 kB with quotes and newlines to escape
    DingTalkChannel().send(message(url, body=long_body))
    [req] = webhook_receiver.requests
    assert req.accepted
    assert len(req.raw) <= dingtalk.MAX_BODY_BYTES
    assert req.json["markdown"]["text"].endswith("truncated）")


# ---------------------------------------------------------------- WeCom


def test_wecom_markdown_accepted(webhook_receiver: WebhookReceiver) -> None:
    url = webhook_receiver.url("/wecom/cgi-bin/webhook/send?key=693a91f6")
    WeComChannel().send(message(url))
    [req] = webhook_receiver.requests
    assert req.accepted
    assert req.json == {
        "msgtype": "markdown",
        "markdown": {"content": f"### {SUBJECT}\n{BODY}"},
    }


def test_wecom_long_content_truncated_to_4096_bytes(webhook_receiver: WebhookReceiver) -> None:
    url = webhook_receiver.url("/wecom/cgi-bin/webhook/send?key=k")
    WeComChannel().send(message(url, body="网络丢包 packet loss " * 1000))
    content = webhook_receiver.requests[0].json["markdown"]["content"]
    assert webhook_receiver.requests[0].accepted
    assert 4000 < len(content.encode()) <= 4096
    assert content.endswith("truncated）")


@pytest.mark.parametrize(
    ("errcode", "retryable", "throttled"),
    [(45009, True, True), (-1, True, False), (93000, False, False)],
)
def test_wecom_errcodes_classified(
    webhook_receiver: WebhookReceiver, errcode: int, retryable: bool, throttled: bool
) -> None:
    webhook_receiver.errcode_next(1, errcode)
    url = webhook_receiver.url("/wecom/cgi-bin/webhook/send?key=k")
    with pytest.raises(ChannelError, match=str(errcode)) as err:
        WeComChannel().send(message(url))
    assert (err.value.retryable, err.value.throttled) == (retryable, throttled)


# ---------------------------------------------------------------- generic webhook and HTTP


def test_webhook_posts_signed_json_without_private_payload(
    webhook_receiver: WebhookReceiver,
) -> None:
    webhook_receiver.state.webhook_secret = "shared"
    webhook_receiver.state.clock = lambda: NOW
    channel = WebhookChannel(WebhookConfig(secret="shared"), clock=lambda: NOW)
    channel.send(
        message(
            webhook_receiver.url("/hook"),
            payload={
                "rule": "camera_missing",
                "secret": "x",
                "at_mobiles": ["13800000000"],
                "fallback": [{"channel": "dingtalk", "target": "https://x", "payload": {}}],
            },
        )
    )
    [req] = webhook_receiver.requests
    assert req.accepted
    assert req.headers["x-syncclass-delivery"] == "7"
    assert req.json == {
        "version": "1",
        "id": 7,
        "kind": "firing",
        "subject": SUBJECT,
        "body": BODY,
        "alert_id": 3,
        "alert": {"rule": "camera_missing"},
    }


def test_webhook_wrong_secret_is_a_permanent_401(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.state.webhook_secret = "shared"
    channel = WebhookChannel(WebhookConfig(secret="guess"))
    with pytest.raises(ChannelError, match="HTTP 401") as err:
        channel.send(message(webhook_receiver.url("/hook")))
    assert err.value.retryable is False


@pytest.mark.parametrize(
    ("status", "retryable", "throttled"),
    [(503, True, False), (429, True, True), (404, False, False)],
)
def test_http_status_classified(
    webhook_receiver: WebhookReceiver, status: int, retryable: bool, throttled: bool
) -> None:
    webhook_receiver.fail_next(1, status)
    with pytest.raises(ChannelError, match=f"HTTP {status}") as err:
        WebhookChannel().send(message(webhook_receiver.url("/hook")))
    assert (err.value.retryable, err.value.throttled) == (retryable, throttled)


def test_unreachable_and_bad_urls(webhook_receiver: WebhookReceiver) -> None:
    with pytest.raises(ChannelError, match="cannot reach") as err:
        WebhookChannel().send(message(f"http://127.0.0.1:{free_port()}/hook"))
    assert err.value.retryable is True
    with pytest.raises(ChannelError, match="bad URL") as err:
        WebhookChannel().send(message("ftp://example.org/hook"))
    assert err.value.retryable is False


def test_robot_reply_that_is_not_json_is_retried(webhook_receiver: WebhookReceiver) -> None:
    with pytest.raises(ChannelError, match="unexpected WeCom reply") as err:
        WeComChannel().send(message(webhook_receiver.url("/hook")))  # answers {"ok": true}
    assert err.value.retryable is True


# ---------------------------------------------------------------- helpers and config


def test_truncate_utf8_never_splits_a_character() -> None:
    text = "同步课堂" * 10
    for limit in range(0, 60):
        cut = truncate_utf8(text, limit, marker="…")
        assert len(cut.encode()) <= max(limit, len("…".encode()))
    assert truncate_utf8("abc", 3) == "abc"


def test_fit_json_refuses_when_the_frame_alone_is_too_big() -> None:
    with pytest.raises(ChannelError, match="frame alone") as err:
        fit_json(lambda text: {"title": "x" * 100, "text": text}, "短", 50)
    assert err.value.retryable is False


def test_notify_config_checks() -> None:
    assert NotifyConfig().backoff(1) == 30.0
    assert NotifyConfig().backoff(3) == 120.0
    assert NotifyConfig().backoff(30) == 1800.0
    with pytest.raises(ValueError, match="lease_s"):
        NotifyConfig(lease_s=60.0)
    with pytest.raises(ValueError, match="max_attempts"):
        NotifyConfig(max_attempts=0)


def test_rate_limits_default_to_the_documented_ones_and_are_configurable() -> None:
    config = NotifyConfig()
    assert (config.dingtalk.limit.per_window, config.dingtalk.limit.window_s) == (20, 60.0)
    assert config.dingtalk.limit.throttle_s == 600.0  # DingTalk: 10 minutes after passing it
    assert (config.wecom.limit.per_window, config.wecom.limit.window_s) == (20, 60.0)
    # No documented limit: ours (the README names them).
    assert (config.email.limit.per_window, config.webhook.limit.per_window) == (10, 60)
    table = {"dingtalk": {"limit": {"per_window": 5, "window_s": 6, "throttle_s": 60}}}
    scaled = section(NotifyConfig, table, "notify")
    assert (scaled.dingtalk.limit.per_window, scaled.dingtalk.limit.throttle_s) == (5, 60.0)
    assert scaled.wecom.limit.per_window == 20
    with pytest.raises(ConfigError, match="per_window"):
        section(NotifyConfig, {"wecom": {"limit": {"per_window": 0}}}, "notify")


def test_notify_config_from_toml_table_names_bad_keys() -> None:
    table = {"max_attempts": 3, "email": {"host": "smtp.wz.edu.cn", "port": 465, "ssl": True}}
    config = section(NotifyConfig, table, "notify")
    assert (config.max_attempts, config.email.port, config.email.ssl) == (3, 465, True)
    with pytest.raises(ConfigError, match=r"notify\.email\.hots"):
        section(NotifyConfig, {"email": {"hots": "x"}}, "notify")
    with pytest.raises(ConfigError, match="exclude each other"):
        section(NotifyConfig, {"email": {"ssl": True, "starttls": True}}, "notify")
