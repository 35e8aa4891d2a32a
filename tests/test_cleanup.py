"""Shared text clean-up: CJK justification spaces, wrapped lines, page furniture. The lines are real ones,
copied from PDFium's text of maint-guide.zh-cn, developers-reference and the Debian Edu manual."""

from __future__ import annotations

import fixtures_files as F
import pytest

from kb_assistant.loaders import load_file
from kb_assistant.loaders.cleanup import join_broken_lines, normalize_cjk, squeeze_cjk_spaces
from kb_assistant.loaders.furniture import is_toc_line, strip_furniture

# ---------------------------------------------------------------- CJK spacing


@pytest.mark.parametrize("line,expected", [
    ("对 于 一 个 支 持多", "对于一个支持多"),  # the example: partly spaced is still justified
    ("3对 于 单 份 源 码 生 成 多 个 二 进 制 包 的 情 况，dh_auto_install 将 临 时 目 录 设 置 为",
     "3对于单份源码生成多个二进制包的情况，dh_auto_install 将临时目录设置为"),  # CJK-Latin kept
    ("为debian/tmp， 而 dh_install 命 令 则 将 文 件 按 照", "为debian/tmp，而 dh_install 命令则将文件按照"),
    ("目 录", "目录"),  # a letter-spaced title
])
def test_letter_spaced_lines_are_squeezed(line, expected):
    assert squeeze_cjk_spaces(line) == expected


@pytest.mark.parametrize("line", [
    "放松一点并准备好处理 Bug 报告，阅读那些 必须的文档来了解详情",  # emphasis boundary: one space
    "foo1 任何 相同 共享库，",  # a table row (maint-guide page 62): cells
    "北风机器人（上海）有限公司 员工人事制度摘要",  # title and subtitle
    "VPN 服务器地址是 vpn.northwind.example，端口 1194",  # CJK-Latin spaces
    "안녕 하세요 여러분 반갑 습니다",  # Korean writes spaces between words
    "The quick brown fox",
])
def test_meaningful_spaces_stay(line):
    assert squeeze_cjk_spaces(line) == line


def test_wrapped_chinese_lines_are_rejoined():
    lines = [  # maint-guide.zh-cn page 21, as PDFium lays it out (a full line is about 100 columns wide)
        "可以看到文件被放到了 /usr/local 下。按照上边的解释，该目录被 Debian 保留作本地用途，所以请把它们",
        "按如下方式修改：",
        "# Where to put executable commands on ’make install’?",
        "注意，gentoo 的 Makefile 里没有提及手册页，而按照 Debian Policy 的要求，每个程序都应有一个手册页，",
        "而按照 Debian Policy 的要求。",
        "有些程序不使用 Makefile 变量定义路径，这意味着你可能需要去编辑 C 程序源代码来使他们使用正确的路径。",
        "但是",
        "grep 会递归搜索整个源代码树并告诉你所有匹配项的文件名和行号。",
        "短行",  # short: a heading or a table cell, never joined
        "下一行",
    ]
    out = join_broken_lines(lines, width=100)
    assert out[0].endswith("所以请把它们按如下方式修改：")
    assert out[1].startswith("# Where")  # a code line is not CJK
    assert out[2].endswith("每个程序都应有一个手册页，而按照 Debian Policy 的要求。")
    assert out[3].endswith("正确的路径。")  # a sentence end is not joined
    assert out[4:6] == ["但是", "grep 会递归搜索整个源代码树并告诉你所有匹配项的文件名和行号。"]  # short
    assert out[6:] == ["短行", "下一行"]
    full = "这意味着你可能需要去编辑 C 程序源代码来使他们使用正确的路径，但是"
    assert join_broken_lines([full, "grep 会递归"], 60) == [full + " grep 会递归"]  # CJK-Latin: a space


def test_line_starting_with_closing_mark_joins_previous():
    # maint-guide.zh-cn page 19: "... install: gentoo-target" / "。"
    assert join_broken_lines(["应该修正为 install: gentoo-target", "。"], width=0) == [
        "应该修正为 install: gentoo-target。"]


def test_lists_and_sentence_ends_are_not_joined():
    long = "这是一个很长的句子，用来占满一整行的宽度，这样它就会被当作一行满行的文字来看待了"
    lines = [long + "。", "下一段从这里开始", long, "• 列表项", long, "1. 第一项"]
    assert join_broken_lines(lines, width=80) == lines


def test_normalize_cjk_leaves_latin_text_alone():
    text = "Making a small test package is\na good way to learn details of packaging."
    assert normalize_cjk(text) == text


def test_hard_wrapped_chinese_text_file(tmp_path):
    body = ("员工每年享有十五天带薪年假，入职满十年的员工每年享有二十天带薪年假，年假须至少提前五个工作日在\n"
            "系统中提交申请，并由直属经理批准。当年未休完的年假最多可顺延五天，顺延的年假须在次年三月底前\n"
            "休完，逾期作废。\n"
            "报销单须在消费后三十天内提交，逾期的报销单财务部不予受理，报销时须附上合规发票，发票抬头必须为\n"
            "公司全称。\n")
    text = load_file(F.make_text(tmp_path / "policy.txt", body))[0].text
    assert text.split("\n") == [
        "员工每年享有十五天带薪年假，入职满十年的员工每年享有二十天带薪年假，年假须至少提前五个工作日在系统中提交申请，"
        "并由直属经理批准。当年未休完的年假最多可顺延五天，顺延的年假须在次年三月底前休完，逾期作废。",
        "报销单须在消费后三十天内提交，逾期的报销单财务部不予受理，报销时须附上合规发票，发票抬头必须为公司全称。"]


# ---------------------------------------------------------------- page furniture


def _pages(header: str | None, footer: str | None, n: int = 5, first: int = 7) -> list[str]:
    body = ["制作小的测试软件包是学习打包细节的好方法。", "The build daemons install build-dependencies.",
            "如果你仍然对打包存有疑问，你可以交互式地提问。", "2024-01-31 发布的版本包含新的安装程序。",
            "Relax and be ready for bug reports."]
    pages = []
    for i in range(n):
        number = first + i
        lines = [header.format(n=number) if header else "", body[i % len(body)],
                 footer.format(n=number) if footer else ""]
        pages.append("\n".join(line for line in lines if line))
    return pages


@pytest.mark.parametrize("header,footer", [
    ("Debian 新维护者手册 {n} / 57", None),  # maint-guide.zh-cn
    ("Debian Edu / Skolelinux 12 Bookworm 手册 {n} / 92", None),  # the Debian Edu manual
    ("Debian Developer’s Reference, Release 12.18", "{n}"),  # fixed header, bare page number
    (None, "- {n} -"),
])
def test_running_headers_and_page_numbers_are_found(header, footer):
    pages = _pages(header, footer)
    out, report = strip_furniture(pages)
    assert out == _pages(None, None)
    assert report.repeated + report.page_numbers == sum(x is not None for x in (header, footer)) * 5


def test_footers_that_name_the_section_are_found_by_their_page_number():
    # developers-reference: odd pages "5.6. Uploading a package 33", even "34 Chapter 5. Managing Packages"
    footers = ["5.6. Uploading a package {n}", "{n} Chapter 5. Managing Packages"]
    bodies = [f"Body text of page {name}." for name in "ABCD"]
    pages = [f"{body}\n" + footers[(33 + i) % 2].format(n=33 + i) for i, body in enumerate(bodies)]
    out, report = strip_furniture(pages)
    assert out == bodies and report.page_numbers == 4
    titles = ["install the agent", "open the port", "add a user", "test the login"]
    steps = [f"Step {i}: {title}\nBody {title}." for i, title in enumerate(titles, start=1)]
    assert strip_furniture(steps)[0] == steps  # a number inside the line is not a page number


def test_roman_page_numbers_of_the_front_matter():
    bodies = [f"Preface paragraph {name}." for name in "ABCD"]
    pages = [f"{body}\n{numeral}" for body, numeral in zip(bodies, ["i", "ii", "iii", "iv"], strict=True)]
    assert strip_furniture(pages)[0] == bodies


def test_content_is_kept():
    # a date and numbers at the top of pages, and a two-page document, are not furniture
    dated = ["2024-01-31 发布\n正文一", "第 3 章 安装\n正文二", "附录 B\n正文三", "1. 准备工作\n正文四"]
    assert strip_furniture(dated)[0] == dated
    two = ["Debian 新维护者手册 5 / 57\n正文", "Debian 新维护者手册 6 / 57\n正文"]
    assert strip_furniture(two)[0] == two


def test_toc_lines():
    assert is_toc_line("1.1 Debian 的社会驱动力 . . . . . . . . . . . . . . . . . . . . . . . . 1")
    assert is_toc_line("4.6.1 Sections . . . . . . . . . . . . . . . . . . . . . . 21")
    assert is_toc_line("Preface ........................ iii")
    assert is_toc_line("第一章 总则 ·························· 12")
    assert not is_toc_line("See the example... it ends here.")
    assert not is_toc_line("d=. ; while [ ! -d $d/debian ]; do d=$d/..; done")
    # a TOC page: leader lines go, and so do its chapter lines without leaders
    toc = ("Contents\n5 debian 目录下的其他文件 29\n5.1 README.Debian . . . . . . . . . . . 29\n"
           "5.2 compat . . . . . . . . . . . . . . 30\n5.3 conffiles . . . . . . . . . . . . . 30")
    body = "5 debian 目录下的其他文件\n正文提到了 5.1 README.Debian . . . 但不是目录。"
    out, report = strip_furniture([toc, body])
    assert out == ["Contents", body] and report.toc == 4
