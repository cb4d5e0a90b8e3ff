"""E-mail over SMTP: one plain-text UTF-8 message per notification.

Subjects and names in 简体中文 travel as RFC 2047 encoded words, the body as base64
UTF-8, so any relay passes them unchanged.  SMTP says itself whether a refusal is
temporary (4xx: retried) or permanent (5xx: failed at once, e.g. an unknown mailbox);
a server that cannot be reached is retried.

Each notification keeps one Message-ID, derived from its outbox row, so a message sent
again after a crash between the relay's "250" and our record of it is recognisably the
same one (mail clients and archives collapse it).
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from datetime import datetime
from email.header import Header
from email.message import Message
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, getaddresses, parseaddr

from fleet.db.base import utcnow
from fleet.notify.base import Channel, ChannelError, Outgoing
from fleet.notify.config import EmailConfig

__all__ = ["EmailChannel", "build_message", "message_id"]


def _address(value: str) -> str:
    pairs = getaddresses([value])
    if len(pairs) != 1 or "@" not in pairs[0][1]:
        raise ChannelError(f"not an e-mail address: {value!r}", retryable=False)
    return formataddr(pairs[0], charset="utf-8")


def message_id(message: Outgoing, sender: str) -> str:
    """The notification's own Message-ID: its row id and creation instant (two fleets'
    databases may reuse an id, not with the same instant) at the sender's domain."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "syncclass"
    created = message.created_at.timestamp() if message.created_at is not None else 0
    return f"<syncclass.notification.{message.id}.{round(created * 1000)}@{domain}>"


def build_message(message: Outgoing, sender: str, now: datetime) -> Message:
    """The MIME message; raises a permanent :class:`ChannelError` for a bad address.

    Built with the legacy ``email.header`` API on purpose: CPython's modern header folder
    drops a space that falls between two encoded words ("10:00 · 大门岛" arrives as
    "10:00 ·大门岛"), while ``Header`` keeps every space inside its encoded words.
    """
    mail = MIMEText(message.body, "plain", "utf-8")
    mail["From"] = _address(sender)
    mail["To"] = _address(message.target)
    # A line break in a subject would start a new header: fold it into a space.
    subject = Header(" ".join(message.subject.splitlines()), "utf-8")
    mail["Subject"] = subject  # type: ignore[assignment]  # compat32 takes a Header
    mail["Date"] = format_datetime(now)
    mail["Message-ID"] = message_id(message, sender)
    mail["X-Syncclass-Notification"] = str(message.id)
    mail["X-Syncclass-Kind"] = message.kind
    if message.alert_id is not None:
        mail["X-Syncclass-Alert"] = str(message.alert_id)
    return mail


class EmailChannel(Channel):
    def __init__(
        self, config: EmailConfig | None = None, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._config = config or EmailConfig()
        self._clock = clock

    def _tls(self) -> ssl.SSLContext:
        cafile = str(self._config.ca_file) if self._config.ca_file else None
        return ssl.create_default_context(cafile=cafile)

    def _connect(self) -> smtplib.SMTP:
        cfg = self._config
        # A fixed HELO name: smtplib would otherwise resolve our FQDN on every connection.
        if cfg.ssl:
            return smtplib.SMTP_SSL(
                cfg.host,
                cfg.port,
                local_hostname=cfg.helo_name,
                timeout=cfg.timeout_s,
                context=self._tls(),
            )
        smtp = smtplib.SMTP(cfg.host, cfg.port, local_hostname=cfg.helo_name, timeout=cfg.timeout_s)
        if cfg.starttls:
            smtp.starttls(context=self._tls())
        return smtp

    def send(self, message: Outgoing) -> None:
        mail = build_message(message, self._config.sender, self._clock())
        where = f"SMTP {self._config.host}:{self._config.port}"
        try:
            with self._connect() as smtp:
                # An empty username means a relay that takes mail without AUTH.
                if self._config.username and self._config.password is not None:
                    smtp.login(self._config.username, self._config.password)
                smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            detail = "; ".join(f"{code} {resp!r}" for code, resp in exc.recipients.values())
            raise ChannelError(
                f"{where} refused {message.target}: {detail}",
                retryable=all(400 <= code < 500 for code in codes),
            ) from None
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode("utf-8", "replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise ChannelError(
                f"{where} answered {exc.smtp_code} {text}", retryable=400 <= exc.smtp_code < 500
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise ChannelError(f"{where}: {exc}", retryable=False) from None
        except ssl.SSLCertVerificationError as exc:
            raise ChannelError(f"{where} TLS certificate: {exc}", retryable=False) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise ChannelError(f"{where}: {type(exc).__name__} {exc}", retryable=True) from None
