"""Every reason a timetable row or file is refused, in 简体中文 and English.

Each half is a whole sentence in its own language; values (a cell, a line, a school)
are filled into both.  tests/fleet/test_timetable_messages.py checks that no Chinese
sentence carries English words and no English sentence carries Chinese.
"""

from __future__ import annotations

from fleet.timetable.errors import Text

# -- the file as a whole
ONLY_CSV_XLSX = Text("仅支持 .csv 和 .xlsx 文件，收到 {name!r}",
                     "only .csv and .xlsx files, not {name!r}")
NOT_XLSX = Text("不是有效的 .xlsx 文件（{detail}）", "not a valid .xlsx file ({detail})")
BAD_ENCODING = Text("无法识别的文本编码，请存为 UTF-8 或 GB18030",
                    "the file is not UTF-8 or GB18030 text")
NO_HEADER = Text("找不到表头（{names}）", "no header row ({names})")
UNKNOWN_COLUMN = Text("未知列名", "unknown column")
DUPLICATE_COLUMN = Text("列名重复", "duplicate column")
MISSING_COLUMN = Text("缺少必需的列", "required column missing")
SEMESTER_BACKWARDS = Text("学期结束早于开始", "the semester ends before it starts")
UNPACKED_TOO_LARGE = Text("xlsx 文件解压后超过 {limit} 字节，不予读取",
                          "the .xlsx file unpacks to more than {limit} bytes: not read")
TOO_LARGE = Text("文件过大，上限 {limit} 字节", "file too large: the limit is {limit} bytes")

# -- one cell
KIND_MISSING = Text("请填写类型：每周、单次、节假日或调休",
                    "kind is required: weekly, once, holiday or workday")
KIND_UNKNOWN = Text("未知类型 {value!r}，应为 每周、单次、节假日或调休",
                    "unknown kind {value!r}: use weekly, once, holiday or workday")
WEEKDAY_BAD = Text("星期无效 {value!r}，应为 1-7 或 周一至周日",
                   "bad weekday {value!r}: use 1-7 or Mon-Sun")
DATE_BAD = Text("日期无效 {value!r}，应为 2026-03-02 这样的格式",
                "bad date {value!r}: use YYYY-MM-DD")
TIME_BAD = Text("时间无效 {value!r}，应为 08:00 这样的格式", "bad time {value!r}: use HH:MM")
MODE_UNKNOWN = Text("未知方式 {value!r}，应为 直播 或 录播",
                    "unknown mode {value!r}: use live or recorded")
SCHOOL_MISSING = Text("请填写学校", "the school is required")
CLASSROOM_UNKNOWN = Text("未知教室 {school}/{room}", "unknown classroom {school}/{room}")
CLASSROOM_AMBIGUOUS = Text("{school} 有 {count} 间教室，请写明教室",
                           "{school} has {count} classrooms: name one")
WEEKLY_WITH_DATE = Text("每周课程不填日期", "a weekly row takes no date")
END_NOT_AFTER_START = Text("结束时间早于或等于开始时间", "end is not after start")
SUBJECT_MISSING = Text("学科必填", "the subject is required")
NO_RECEIVER = Text("至少填写一个接收教室", "at least one receiving classroom is required")
RECEIVER_IS_MAIN = Text("接收教室 {ref} 就是主讲教室", "receiving classroom {ref} is the main one")
RECEIVER_TWICE = Text("接收教室 {ref} 重复", "receiving classroom {ref} is listed twice")
OUTSIDE_SEMESTER = Text("日期 {day} 不在学期内（{start} 至 {end}）",
                        "date {day} is outside the semester ({start} to {end})")
ON_HOLIDAY = Text("{day} 是节假日", "{day} is a holiday")
CLASH_WITH_ROW = Text("教室 {room} 在 {when} 与第 {line} 行时间冲突",
                      "classroom {room} is double-booked at {when} with line {line}")
CLASH_WITH_LESSON = Text("教室 {room} 在 {when} 与已有课程 #{lesson}（{source}）时间冲突",
                         "classroom {room} is double-booked at {when} with lesson #{lesson} "
                         "({source})")
NOT_OWNERS = Text("主讲教室 {room} 不属于本课表的学校（{owner}）",
                  "main classroom {room} is not in this schedule's school(s) ({owner})")
MANY_SCHOOLS = Text("课表含多所学校的课程（{schools}），请指定学校或结对",
                    "the file has lessons of several schools ({schools}): name the school "
                    "or the pair")
PAIR_UNKNOWN = Text("未知结对 {ref!r}", "unknown pair {ref!r}")
BAD_CSV = Text("CSV 文件格式有误（{detail}）", "malformed CSV file ({detail})")
MERGED_NOTE = Text("（该格属于合并单元格 {merged_cells}，按其左上角的值读取）",
                   " (this cell is part of the merged cells {merged_cells}, read as their "
                   "top-left value)")

# -- the API's answers about an import
FOREIGN_CLASSROOMS = Text("课表涉及你负责范围以外的教室",
                          "the timetable uses classrooms outside the schools you look after")
QUEUE_FULL = Text("导入任务已满，请稍后再试", "too many timetable imports waiting: try again later")
NO_SUCH_JOB = Text("没有这个导入任务", "no such import job")
HOLIDAY_BAD = Text("节假日日期无效 {value!r}，应为 2026-10-01 这样的格式",
                   "bad holiday date {value!r}: use YYYY-MM-DD")

# -- the preview of an import (what would change)
SUBJECT_CHANGED = Text("学科由 {old} 改为 {new}", "subject changed: {old} -> {new}")
GRADE_CHANGED = Text("年级由 {old} 改为 {new}", "grade changed: {old} -> {new}")
TEACHER_CHANGED = Text("教师由 {old} 改为 {new}", "teacher changed: {old} -> {new}")
END_CHANGED = Text("下课时间由 {old} 改为 {new}", "end changed: {old} -> {new}")
MODE_CHANGED = Text("方式由 {old} 改为 {new}", "mode changed: {old} -> {new}")
RECEIVERS_CHANGED = Text("接收教室由 {old} 改为 {new}",
                         "receiving classrooms changed: {old} -> {new}")
REINSTATED = Text("恢复此前取消的课", "a lesson cancelled before comes back")
KEPT_EDIT = Text("已手动{edit}（{at}），课表为 {planned}：保留手动调整",
                 "changed by hand ({edit}, {at}); the file says {planned}: the change is kept")
KEPT_EDIT_GONE = Text("已手动{edit}（{at}），课表已无此课：保留手动调整",
                      "changed by hand ({edit}, {at}); the file no longer has it: the change "
                      "is kept")

# -- a change on the day (cancel, move or add one lesson)
ENDS_FIRST = Text("下课时间须晚于上课时间", "the lesson must end after it starts")
NAIVE = Text("时间须带时区", "times must carry a time zone")
LESSON_CLASH = Text("教室 {room} 在 {when} 已有课程 #{lesson}（{subject}）",
                    "classroom {room} already has lesson #{lesson} ({subject}) at {when}")
MAIN_IS_RECEIVER = Text("主讲教室不能同时是接收教室",
                        "the main classroom cannot also be a receiving classroom")
ALREADY_CANCELLED = Text("这节课已取消", "this lesson is already cancelled")
