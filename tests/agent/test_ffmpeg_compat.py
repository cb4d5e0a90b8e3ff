"""The camera's ffmpeg command line, checked against what each FFmpeg release accepts.

The per-release lists below are test data written from FFmpeg's own documentation
(doc/ffmpeg.texi, doc/filters.texi at the release tags) and changelog, independent of
the agent's compatibility table: -fps_mode came with 5.1 (commit 09c53a04, "ffmpeg: add
option fps_mode"), which deprecated -vsync (still accepted through 8.x behind
FFMPEG_OPT_VSYNC); freezedetect came with 4.2 ("Ada").  The lists hold the options the
agent may use, not every option of a release.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from agent.hardware import ffmpeg_compat
from agent.hardware.ffmpeg_compat import MINIMUM, NEWEST, TABLE, parse_version, spelling
from agent.hardware.media import camera_input, picture_command
from agent.probes.camera import criteria
from agent.thresholds import Thresholds
from tests.agent.fixtures.media import Build, ffmpeg_build

__all__ = ["ffmpeg_build"]  # fixture used here

_COMMON = {"-hide_banner", "-nostdin", "-loglevel", "-f", "-i", "-vf", "-frames:v",
           "-progress", "-rtsp_transport", "-vsync"}
#: release -> (ffmpeg options it accepts, options it deprecates)
OPTIONS: dict[tuple[int, int], tuple[set[str], set[str]]] = {
    (4, 2): (_COMMON, set()),
    (4, 4): (_COMMON, set()),
    (5, 0): (_COMMON, set()),
    (5, 1): (_COMMON | {"-fps_mode"}, {"-vsync"}),
    (6, 1): (_COMMON | {"-fps_mode"}, {"-vsync"}),
    (7, 0): (_COMMON | {"-fps_mode"}, {"-vsync"}),
    (7, 1): (_COMMON | {"-fps_mode"}, {"-vsync"}),
}
_FILTERS = {
    # filter -> its options in positional order (filters.texi)
    "select": ["expr", "outputs"],
    "scale": ["w", "h", "flags", "interl"],
    "format": ["pix_fmts"],
    "blackdetect": ["black_min_duration", "d", "picture_black_ratio_th", "pic_th",
                    "pixel_black_th", "pix_th"],
    "freezedetect": ["noise", "n", "duration", "d"],
    "metadata": ["mode", "key", "value", "function", "expr", "file"],
}
FILTERS = {release: _FILTERS for release in OPTIONS}
#: options that take a value (the rest are flags)
_VALUED = {"-loglevel", "-f", "-i", "-vf", "-frames:v", "-progress", "-rtsp_transport",
           "-vsync", "-fps_mode"}

INPUTS = {
    "v4l2": camera_input("/dev/video0"),
    "rtsp": camera_input("rtsp://10.0.0.9/main"),
    "lavfi": camera_input("lavfi:testsrc=size=320x240:rate=25"),
}


def _options(cmd: list[str]) -> tuple[list[str], str]:
    """The options of an ffmpeg command line and its -vf graph."""
    options, graph, args = [], "", iter(cmd[1:])
    for arg in args:
        if arg == "-":  # the output
            continue
        assert arg.startswith("-"), f"stray argument {arg!r}"
        options.append(arg)
        if arg in _VALUED:
            value = next(args)
            if arg == "-vf":
                graph = value
    return options, graph


def _filters(graph: str) -> list[tuple[str, list[str]]]:
    """(filter, option names) for each filter of a simple chain, positional ones named."""
    out = []
    for part in re.split(r"(?<!\\),", graph):
        name, _, args = part.partition("=")
        named = []
        for i, arg in enumerate(a for a in re.split(r"(?<!\\):", args) if a):
            key, eq, _ = arg.partition("=")
            named.append(key if eq and not key.startswith("'") else _FILTERS[name][i])
        out.append((name, named))
    return out


@pytest.mark.parametrize("release", sorted(OPTIONS))
@pytest.mark.parametrize("kind", sorted(INPUTS))
def test_command_uses_only_what_the_release_has(release: tuple[int, int], kind: str) -> None:
    cmd = picture_command(INPUTS[kind], criteria(Thresholds()), release)
    options, graph = _options(cmd)
    accepted, deprecated = OPTIONS[release]
    assert set(options) <= accepted, set(options) - accepted
    assert not set(options) & deprecated
    filters = _filters(graph)
    assert [name for name, _ in filters] == ["select", "scale", "format", "blackdetect",
                                              "freezedetect", "metadata"]
    for name, named in filters:
        assert set(named) <= set(FILTERS[release][name]), (name, named)


def test_passthrough_spelling_follows_the_table() -> None:
    assert spelling("passthrough", (4, 2)) == ("-vsync", "passthrough")
    assert spelling("passthrough", (4, 4)) == ("-vsync", "passthrough")
    assert spelling("passthrough", (5, 0)) == ("-vsync", "passthrough")
    assert spelling("passthrough", (5, 1)) == ("-fps_mode", "passthrough")
    assert spelling("passthrough", (7, 1)) == ("-fps_mode", "passthrough")
    assert spelling("passthrough", NEWEST) == ("-fps_mode", "passthrough")
    with pytest.raises(ValueError, match="cannot do passthrough"):
        spelling("passthrough", (4, 1))
    # every release the table names is one the tests check
    assert {s.since for spellings in TABLE.values() for s in spellings} <= set(OPTIONS)
    assert min(OPTIONS) == MINIMUM


@pytest.mark.parametrize(("line", "release"), [
    # first lines of `ffmpeg -version` on the distributions' own packages
    ("ffmpeg version 4.2.7-0ubuntu0.1 Copyright (c) 2000-2022 the FFmpeg developers", (4, 2)),
    ("ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright (c) 2000-2021 the FFmpeg developers",
     (4, 4)),
    ("ffmpeg version 5.1.6-0+deb12u1 Copyright (c) 2000-2024 the FFmpeg developers", (5, 1)),
    ("ffmpeg version 6.1.1-3ubuntu5 Copyright (c) 2000-2023 the FFmpeg developers", (6, 1)),
    ("ffmpeg version 7.1.1-1 Copyright (c) 2000-2025 the FFmpeg developers", (7, 1)),
    ("ffmpeg version n7.0 Copyright (c) 2000-2024 the FFmpeg developers", (7, 0)),
    ("ffmpeg version N-113292-g7c5d7a3b6e-static https://johnvansickle.com/ffmpeg/", NEWEST),
    ("ffmpeg version 2024-05-01-git-aa2b9f6d8a-full_build-www.gyan.dev", NEWEST),
])
def test_version_lines(line: str, release: tuple[int, int]) -> None:
    found = parse_version(line + "\nbuilt with gcc 12\n")
    assert found is not None and found.release == release and found.text == line


def test_unreadable_version_is_none() -> None:
    assert parse_version("") is None
    assert parse_version("avconv version 12.3, Copyright (c) the Libav developers") is None


def _help(build: Build, *topic: str) -> str:
    return subprocess.run([build.path, "-hide_banner", "-h", *topic], capture_output=True,
                          text=True, check=True).stdout


def test_option_lists_agree_with_real_builds(ffmpeg_build: Build) -> None:
    """The test data, checked against the builds there are: each lists what its own
    -h full and -h filter=… say (for those data lists a release of)."""
    accepted, _ = OPTIONS[ffmpeg_build.version.release]
    listed = set(re.findall(r"^\s*(-\w+)", _help(ffmpeg_build, "full"), re.MULTILINE))
    # "-i" is the input itself, not a listed option; -nostdin is the boolean -stdin negated
    wanted = {o.split(":")[0].replace("-no", "-", 1) for o in accepted - {"-i"}}
    assert wanted <= listed, wanted - listed
    assert ("-fps_mode" in listed) == ("-fps_mode" in accepted)
    for name, options in FILTERS[ffmpeg_build.version.release].items():
        text = _help(ffmpeg_build, f"filter={name}")
        assert set(options) <= set(re.findall(r"^\s+(\w+)\s+<", text, re.MULTILINE)), name


def test_this_machines_ffmpeg_is_detected_once() -> None:
    ffmpeg_compat.detect.cache_clear()
    first_line = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True,
                                check=True).stdout.splitlines()[0]
    found = ffmpeg_compat.detect()
    assert found is not None and found.text == first_line and found.supported()
    assert ffmpeg_compat.detect() is found
    assert ffmpeg_compat.detect.cache_info().misses == 1
    assert ffmpeg_compat.detect("/nonexistent/ffmpeg") is None
