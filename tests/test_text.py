"""Text primitives: language detection, sentence spans and answer sentences, terms, citations."""

from __future__ import annotations

import random

import pytest

from kb_assistant.text import (
    ANSWER_STOPWORDS_EN,
    citation_numbers,
    detect_lang,
    has_cjk,
    sentence_spans,
    split_sentences,
    strip_citations,
    terms,
    truncate_sentences,
    unwrap_lines,
)


@pytest.mark.parametrize("text, lang", [
    ("", "en"), ("12345 678", "en"), ("!!! ... ???", "en"), ("2024年", "zh"),  # digits are not letters
    ("How do I reset my password?", "en"), ("如何重置密码？", "zh"),
    ("Python是一种编程语言", "zh"),  # mixed: 6 Han of 12 letters
    ("Use apt-get 安装", "en"),  # 2 Han of 11 letters: 18 %, under the 20 % rule
    ("apt 安装", "zh"),  # 2 Han of 5 letters
    ("ひらがな", "zh"), ("カタカナです", "zh"), ("한국어", "zh"),  # kana and hangul count as CJK
    ("𠀀𠀁 ab", "zh"),  # supplementary-plane Han
    ("Ωmega ÅÄÖ", "en"), ("ＡＢＣ", "en"),  # other scripts and full-width Latin are not CJK
])
def test_detect_lang(text, lang):
    assert detect_lang(text) == lang


def test_has_cjk():
    assert has_cjk("abc 中") and has_cjk("カ") and not has_cjk("abc 123 Ω ＡＢＣ")


def _check_spans(text: str) -> list[str]:
    spans = sentence_spans(text)
    prev_end = 0
    for start, end in spans:
        piece = text[start:end]
        assert piece and piece == piece.strip()  # exact slices, trimmed, none empty
        assert start >= prev_end  # in order, no overlap
        prev_end = end
    covered = {i for s, e in spans for i in range(s, e)}
    assert all(ch.isspace() for i, ch in enumerate(text) if i not in covered)  # nothing dropped
    return [text[s:e] for s, e in spans]


def test_sentence_spans_are_exact_slices():
    text = 'First line. Second one!\nThird?  Fourth 第一句。第二句！」 "Quoted." end\n\n  tail  '
    assert _check_spans(text) == ["First line.", "Second one!", "Third?", "Fourth 第一句。", "第二句！」",
                                  '"Quoted." end', "tail"]
    assert _check_spans("") == [] and _check_spans(" \n\t ") == []
    assert _check_spans("no end mark") == ["no end mark"]
    assert _check_spans("v2.5 and /etc/apt.conf stay.") == ["v2.5 and /etc/apt.conf stay."]


def test_sentence_spans_random_texts():
    rng = random.Random(0)
    alphabet = list("ab c.。!?；\n 中文\t”)") + [". ", "e.g. ", "\r\n"]
    for _ in range(300):
        _check_spans("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))))


def test_split_sentences_keeps_paths_abbreviations_and_versions_whole():
    text = ("Edit /etc/apt/sources.list first. Then run apt update; e.g. foo bar. "
            "Version 2.5 is out. 3 bugs fixed. 第一句。第二句！Last")
    assert split_sentences(text) == ["Edit /etc/apt/sources.list first.",
                                     "Then run apt update; e.g. foo bar.", "Version 2.5 is out.",
                                     "3 bugs fixed.", "第一句。", "第二句！", "Last"]
    assert split_sentences("one\n\ntwo") == ["one", "two"]
    assert split_sentences("") == [] and split_sentences(None) == []  # type: ignore[arg-type]


def test_split_sentences_cuts_over_long_pieces():
    words = " ".join(f"w{i:03d}" for i in range(200))  # 999 characters, no sentence end
    pieces = split_sentences(words, max_chars=100)
    assert all(len(p) <= 100 for p in pieces) and len(pieces) == 10
    assert " ".join(pieces) == words  # cut at spaces: no word split or lost
    run = "中" * 900  # no space to cut at: hard cuts at max_chars
    assert [len(p) for p in split_sentences(run, max_chars=400)] == [400, 400, 100]


def test_terms_english():
    got = terms("How do I configure the apt-get proxy? Use /etc/apt.conf, v2.5")
    assert got == ["configure", "apt-get", "proxy", "use", "etc", "apt.conf", "v2.5"]
    assert not set(got) & ANSWER_STOPWORDS_EN
    assert terms("") == [] and terms("What is it?") == []


def test_terms_chinese_words_and_characters():
    got = terms("如何配置代理服务器")
    assert "如何" not in got  # a question word
    assert {"配置", "代理服务器"} <= set(got)  # jieba words of two or more characters
    assert {"配", "置", "代", "理", "服", "务", "器"} <= set(got)  # and the single characters
    assert terms("猫") == ["猫"]
    assert terms("Set 代理 now") == ["set", "now", "代理", "代", "理"]


def test_citation_numbers_and_strip():
    assert citation_numbers("a [1] b [12][1] [x] [ 3] [4a]") == [1, 12, 1]
    assert citation_numbers("") == [] and citation_numbers(None) == []  # type: ignore[arg-type]
    assert strip_citations("Use apt [1]. Then [2][3]\nnext [4] line") == "Use apt. Then\nnext line"
    assert strip_citations("第一句[1]。第二句[2]") == "第一句。第二句"
    assert strip_citations("  [1] only markers [2]  ") == "only markers"
    assert strip_citations("keep [x] and [1a]") == "keep [x] and [1a]"


@pytest.mark.parametrize("text, n, expected", [
    ("One [1]. Two [2][3]. Three.", 2, "One [1]. Two [2][3]."),
    ("One. [1] Two. Three.", 1, "One. [1]"),  # a citation after the full stop stays with its sentence
    ("第一句[1]。第二句。第三句。", 2, "第一句[1]。第二句。"),
    ("Version 2.5 is out. Next.", 1, "Version 2.5 is out."),
    ("One. Two.", 5, "One. Two."),
    ("  One. Two.  ", None, "One. Two."), ("One. Two.", 0, "One. Two."),
])
def test_truncate_sentences(text, n, expected):
    assert truncate_sentences(text, n) == expected


# ------------------------------------------------------------------ PDF layout lines
_WRAPPED = ("Files must be signed using the debsign command with your private GPG key in the\n"
            "~/.gnupg/ directory, before uploading them to the Debian FTP archive. In order to install this\n"
            "environment you just need to install the build-essential package. This is a meta-package or\n"
            "placeholder package which depends on the standard development tools one needs.\n"
            "5.4 How can I install a developer's environment to build packages?\n"
            "• with format 3.0 (native), it has only a single tarball which is the whole source\n"
            "• with format 3.0 (quilt), it has a mandatory upstream tarball and a debian tarball\n")


def test_split_sentences_joins_the_lines_that_only_wrap_a_pdf_sentence():
    sentences = split_sentences(_WRAPPED)
    assert "In order to install this environment you just need to install the build-essential package." \
        in sentences
    assert sentences[0].startswith("Files must be signed using the debsign command with your private GPG key "
                                   "in the ~/.gnupg/ directory")
    # a heading and the list items keep their own lines
    assert "5.4 How can I install a developer's environment to build packages?" in sentences
    assert sum(s.startswith("•") for s in sentences) == 2
    han = ("这个目录中存放着许多文件，我们将要修改这些文件来定制软件包行为。"
           "其中最重要的文件当属控制文件和变更日志以及\n规则文件，所有的软件包都必须有这几个文件。\n")
    joined = "其中最重要的文件当属控制文件和变更日志以及规则文件，所有的软件包都必须有这几个文件。"
    assert joined in split_sentences(han)


def test_a_few_wider_lines_do_not_hide_a_page_of_wrapped_lines():
    # a manual set in a small font: ~130-column lines, one PDF line ran into the next (240 columns)
    page = "\n".join([
        "1.2 Programs needed for development",
        "Before you start anything, you should make sure that you have properly installed some "
        "additional packages needed for development. Note that the list does not contain any packages "
        "marked essential or required - we expect that you have those",
        "installed already.",
        "The following packages come with the standard Debian installation, so you probably have them "
        "already",
        "(along with any additional packages they depend on). Still, you should check them with aptitude "
        "show",
        "package or with dpkg -s package. The most important package to install on your development "
        "system is",
        "the build-essential package. Once you try to install",
        "that, it will pull in other packages required to have a basic build environment, as it should "
        "do.", ""])
    sentences = split_sentences(page)
    assert "Once you try to install that, it will pull in other packages required to have a basic build " \
           "environment, as it should do." in sentences
    assert any(s.endswith("we expect that you have those installed already.") for s in sentences)
    assert "1.2 Programs needed for development" in sentences  # the heading keeps its line
    # in such a text only a break in mid-sentence is joined: code and Chinese after English stay apart
    fill = " component" * 16
    code = "\n".join([
        "The sources are listed one per line in the file, and each of them names the url of the archive "
        "and",
        "the distribution. Every line gives its own components too, which the archive may or may not "
        "carry",
        "for every one of the architectures that it supports, so that apt knows where each package "
        "lives.",
        f"deb url distribution{fill} and some more of them here to fill the line up to the end",
        f"deb-src url distribution{fill} and some more of them here to fill the line up to the end",
        "The ldap modules are usually put before the others, so that they are asked first of all the",
        "ldap 模块通常插在其它之前，这样会被首先询问。", ""])
    unwrapped = unwrap_lines(code)
    assert "\ndeb-src url" in unwrapped and "\nldap 模块" in unwrapped
    assert "the url of the archive and the distribution." in unwrapped


def test_unwrap_lines_keeps_the_breaks_of_html_and_markdown_text():
    html = ("Debian packages are built from a source package that holds the upstream tarball and the "
            "packaging in a debian directory, with a changelog and a control file describing the package, "
            "its dependencies and the maintainer who looks after it in the archive\n"
            "build-essential is the package that pulls in the compiler and the tools one needs to build\n"
            "Example 11.7. Enabling content-based filters\n"
            "header_checks = regexp:/etc/postfix/header_checks\n")
    assert unwrap_lines(html) == html  # paragraphs wider than a page: not layout text
    table = ("Windows XP / Windows Server 2008 | i386, amd64, ia64 and some other architectures\n"
             "Windows RT | armel, armhf, arm64 and a few other architectures of that era here\n")
    assert unwrap_lines(table) == table
    short = "Chapter 4\ndebian directory contents\n4.1 control\n"
    assert unwrap_lines(short) == short
