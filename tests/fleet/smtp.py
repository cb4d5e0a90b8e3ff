"""A real SMTP server (aiosmtpd) on a free loopback port, keeping what it receives.

It can be told to refuse recipients permanently (550) or temporarily (451), be stopped to
play a relay that is down, or demand STARTTLS and a login like a county mail relay.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from fleet.broker import TlsFiles, free_port

__all__ = ["Received", "SmtpServer", "smtp_server"]


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage  # parsed with the modern policy: headers come back decoded


@dataclass
class _Handler:
    messages: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address -> SMTP reply

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


@dataclass
class _Users:
    passwords: dict[str, str]
    attempts: list[str] = field(default_factory=list)  # the logins tried, right or wrong

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            self.attempts.append(auth_data.login.decode())
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.passwords.get(auth_data.login.decode()) == auth_data.password.decode()
        )
        return AuthResult(success=ok, handled=False)  # handled=False: reply 535 for us


class SmtpServer:
    def __init__(
        self,
        tls: TlsFiles | None = None,
        users: dict[str, str] | None = None,
        auth_required: bool = True,
    ) -> None:
        """``users`` with ``auth_required=False``: a relay that offers AUTH (also without
        TLS) and refuses every login not in ``users``, but takes mail without one."""
        self.host = "127.0.0.1"
        self.port = free_port()
        self._handler = _Handler()
        self._users = _Users(users or {})
        extra: dict[str, Any] = {}
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls.cert_file, tls.key_file)
            extra.update(tls_context=context, require_starttls=True)
        if users is not None:
            extra.update(authenticator=self._users, auth_required=auth_required)
            if not auth_required:
                extra.update(auth_require_tls=False)
        self._controller = Controller(self._handler, hostname=self.host, port=self.port, **extra)

    @property
    def messages(self) -> list[Received]:
        return self._handler.messages

    @property
    def auth_attempts(self) -> list[str]:
        return self._users.attempts

    def refuse(self, address: str, reply: str = "550 5.1.1 No such user") -> None:
        self._handler.refuse[address] = reply

    def accept(self, address: str) -> None:
        """The mailbox works again."""
        self._handler.refuse.pop(address, None)

    def start(self) -> SmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    try:
        yield server
    finally:
        with contextlib.suppress(AssertionError, RuntimeError):  # stopped by the test
            server.stop()
