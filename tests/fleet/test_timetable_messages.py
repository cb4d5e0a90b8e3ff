"""Every timetable message is a Chinese sentence and an English one, each whole.

The duplicate-row message once read "与第 2 行 / line 2时间冲突": a value spliced between
two halves.  Messages are now ``Text`` pairs; this checks every one of them, so a new
message cannot mix the languages either.
"""

from __future__ import annotations

import re
from types import ModuleType

import pytest

from fleet.timetable import errors, messages
from fleet.timetable.errors import Text

_FIELD = re.compile(r"\{[^{}]*\}")
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
# Two Latin words in a row make an English phrase; tokens like UTF-8, .xlsx, 1-7 do not.
_ENGLISH_PHRASE = re.compile(r"[A-Za-z]{2,}[\s,:;]+[A-Za-z]{2,}")


def _texts(*modules: ModuleType) -> list[tuple[str, Text]]:
    return [(f"{m.__name__}.{name}", value) for m in modules
            for name, value in vars(m).items() if isinstance(value, Text)]


TEXTS = _texts(errors, messages)


def test_every_message_is_found() -> None:
    assert len(TEXTS) > 30


@pytest.mark.parametrize(("name", "text"), TEXTS, ids=[n for n, _ in TEXTS])
def test_each_half_is_in_its_own_language(name: str, text: Text) -> None:
    zh, en = _FIELD.sub("", text.zh), _FIELD.sub("", text.en)
    assert _CJK.search(zh), f"{name}: the Chinese half has no Chinese"
    assert not _ENGLISH_PHRASE.search(zh), f"{name}: English in the Chinese half {zh!r}"
    assert not _CJK.search(en), f"{name}: Chinese in the English half {en!r}"
    assert re.search(r"[A-Za-z]{2,}", en), f"{name}: the English half has no English"
    assert " / " not in zh + en, f"{name}: a half holds the separator"
    # Both halves take the same values, so neither leaves one out.
    assert set(_FIELD.findall(text.zh)) == set(_FIELD.findall(text.en)), name


def test_a_note_joins_each_half_to_its_own() -> None:
    joined = (messages.TIME_BAD + messages.MERGED_NOTE)(value="8点", merged_cells="D2:D3")
    assert joined == ("时间无效 '8点'，应为 08:00 这样的格式"
                      "（该格属于合并单元格 D2:D3，按其左上角的值读取） / "
                      "bad time '8点': use HH:MM (this cell is part of the merged cells D2:D3, "
                      "read as their top-left value)")
