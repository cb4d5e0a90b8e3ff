"""What happened to an action request: audit outcomes and bilingual refusals."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["ActionRefused", "Outcome", "RefusalCode"]


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # signed and sent; waiting for the agent's cmd/result
    REFUSED = "refused"  # by the fleet's own rules, never sent
    OK = "ok"  # the agent executed it
    FAILED = "failed"  # the agent refused or failed it, or it could not be sent
    TIMEOUT = "timeout"  # no cmd/result within answer_timeout_s


class RefusalCode(StrEnum):
    UNKNOWN_DEVICE = "unknown_device"
    DEVICE_DISABLED = "device_disabled"
    UNKNOWN_ACTION = "unknown_action"
    BAD_ARGS = "bad_args"
    UNIT_NOT_ALLOWED = "unit_not_allowed"
    REASON_REQUIRED = "reason_required"
    IN_LESSON = "in_lesson"
    LEAD_WINDOW = "lead_window"
    RATE_LIMITED = "rate_limited"


# The HTTP status an API answers a refusal with.
_HTTP_STATUS = {
    RefusalCode.UNKNOWN_DEVICE: 404,
    RefusalCode.DEVICE_DISABLED: 409,
    RefusalCode.UNKNOWN_ACTION: 422,
    RefusalCode.BAD_ARGS: 422,
    RefusalCode.UNIT_NOT_ALLOWED: 422,
    RefusalCode.REASON_REQUIRED: 422,
    RefusalCode.IN_LESSON: 409,
    RefusalCode.LEAD_WINDOW: 409,
    RefusalCode.RATE_LIMITED: 429,
}


@dataclass
class ActionRefused(Exception):
    """The fleet refused an action; the request is in the audit log as ``audit_id``."""

    code: RefusalCode
    message_zh: str
    message_en: str
    audit_id: int | None = None
    retry_after_s: float | None = None  # set for RATE_LIMITED

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS[self.code]

    @property
    def detail(self) -> str:
        return f"{self.code.value}: {self.message_zh} / {self.message_en}"

    def __str__(self) -> str:
        return self.detail
