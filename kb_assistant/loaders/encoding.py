"""Decode text files in any common encoding and refuse binary content.

Order: BOM -> NUL-pattern UTF-16/32 without BOM -> strict UTF-8 -> CJK legacy codecs and
charset-normalizer -> Latin-1/cp1252, each result checked so that garbage is never accepted.
"""

from __future__ import annotations

import codecs
import logging
import re

from kb_assistant.errors import CorruptFile

logger = logging.getLogger(__name__)

_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]
_CTRL_BYTES = set(range(9)) | {11} | set(range(14, 32)) | {127}
_BAD_CHARS_RE = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f\ufffd\ue000-\uf8ff]")
# Commonest CJK characters: a decoding that yields many of them is almost certainly right.
_COMMON_HAN = set(
    "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过发后作"
    "里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心她本前开但因只从想实"
    "日军者意无力它与长把机十民第公此已工使情明性知全三又关点正业外将两高间由问很最重并物手应战向头文体政美相"
    "见被利什二等产或新己制身果加西斯月话合回特代内信表化老给世位次度门任常先海通教儿原东声提立及比员解水名真"
    "论处走义各入几口认条平系气题活尔更别打女变四神总何电数安少报才结反受目太量再感建务做接必场件计管期市直德"
    "资命山金指克许统区保至队形社便空决治展马科司五基眼书非则听白却界达光放强即像难且权思王象完设式色路记南品"
    "住告类求据程北边死张该交规万取拉格望觉术领共确传师观清今切院让识候带导争运笑飞风步改收根干造言联持组每济"
    "车亲极林服快办议往元英士证近失转夫令准布始怎呢存未远叫台单影具罗字爱击流备兵连调深商算质团集百需价花党华"
    "城石级整府离况亚请技际约示复病息究线似官火断精满支视消越器容照须九增研写称企八功吗包片史委乎查轻易早曾除"
    "农找装广显吧阿李标谈吃图念六引历首医局突专费号尽另周较注语仅考落青随选列武红响虽推势参希古众构房半节土投"
    "某案黑维革划敌致陈律足态护七兴派孩验责营星够章音跟志底站严巴例防族供效续施留讲型料终答紧黄绝奇察母京段依"
    "批群项故按河米围江织害斗双境客纪采举杀攻父苏密低朝友诉止细愿千值仍男钱破网热助倒育属坐帝限船脸职速刻乐否"
    "刚威毛状率甚独球般普怕弹校苦创假久错承印晚兰试股拿脑预谁益阳若哪微尼继送急血惊伤素药适波夜省初喜卫源食险"
    "待述陆习置居劳财环排福纳欢雷警获模充负云停木游龙树疑层冷洲冲射略范竟句室异激汉村哈策演简卡罪判担州静退既"
    "衣您宗积余痛检差富灵协角占配征修皮挥胜降阶审沉坚善妈刘读啊超免压银买皇养伊怀执副乱抗犯追帮宣佛岁航优怪香"
    "著田铁控税左右份穿艺背阵草脚概恶块顿敢守酒岛托央户烈洋哥索胡款靠评版宝座释景顾弟登货互付伯慢欧换闻危忙核"
    "暗姐介坏讨丽良序升监临亮露永呼味野架域沙掉括舰鱼杂误湾吉减编楚肯测败屋跑梦散温困剑渐封救贵枪缺楼县尚毫移"
    "娘朋画班智亦耳恩短掌恐遗固席松秘谢鲁遇康虑幸均销钟诗藏赶剧票损忽巨炮旧端探湖录叶春乡附吸予礼港雨呀板庭妇"
    "歸個們來時說為國與們這過會經於對後從還點樣開當學種動現實間問長發應進頭無樣體麼電話員費報審請額內"
    "們個這來時說為國與過會經於對後從還點樣開當學種動現實間問長發應進頭無體麼電話員費報審請額內將業東車區門際"
    "選題義見據設務條產議環變關連灣傳組導雖網術聲響單歡輕隊雙養醫寫書買賣讀貴錢鐘價處層總華萬樂歷類邊隨聯記統"
    "認讓證識該線練續維號節紀約級結給絕經綠購資達運遠適遷遺辦勞請薪資假報銷審與當這"
)


def _sniff_bom(data: bytes) -> str | None:
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    return None


def _sniff_wide(data: bytes) -> str | None:
    """UTF-16/32 without BOM: mostly-ASCII text leaves NULs at regular byte positions."""
    sample = data[:4096]
    n = len(sample) - len(sample) % 4
    if n < 8 or sample.count(0) < n // 4:
        return None
    cols = [sample[i:n:4].count(0) / (n // 4) for i in range(4)]
    if cols[1] > 0.9 and cols[2] > 0.9 and cols[3] > 0.9:
        return "utf-32-le"
    if cols[0] > 0.9 and cols[1] > 0.9 and cols[2] > 0.9:
        return "utf-32-be"
    even = (cols[0] + cols[2]) / 2
    odd = (cols[1] + cols[3]) / 2
    if odd > 0.6 and even < 0.1:
        return "utf-16-le"
    if even > 0.6 and odd < 0.1:
        return "utf-16-be"
    return None


def _bad_ratio(text: str) -> float:
    if not text:
        return 0.0
    return len(_BAD_CHARS_RE.findall(text)) / len(text)


def _han_score(text: str) -> float:
    """Share of common characters among the non-ASCII ones (1.0 when there are none)."""
    wide = [c for c in text if ord(c) > 0x7F and not c.isspace()]
    if not wide:
        return 1.0
    good = sum(1 for c in wide if c in _COMMON_HAN or _is_good_symbol(c))
    return good / len(wide)


_PUNCT = "\u2018\u2019\u201c\u201d\u2026\u00b7"


def _hangul_score(text: str) -> float:
    """Share of Hangul syllables and CJK punctuation among the non-ASCII characters."""
    wide = [c for c in text if ord(c) > 0x7F and not c.isspace()]
    if not wide:
        return 1.0
    return sum(1 for c in wide if "\uac00" <= c <= "\ud7a3" or _is_good_symbol(c)) / len(wide)


def _is_good_symbol(c: str) -> bool:
    """CJK punctuation, kana, full-width forms (but not half-width katakana, a mis-decoding sign)."""
    return "\u3000" <= c <= "\u30ff" or "\uff01" <= c <= "\uff5e" or c in _PUNCT


def looks_binary(data: bytes) -> bool:
    """NUL bytes (outside UTF-16/32) or more than 10% control bytes in the first 8 KiB."""
    sample = data[:8192]
    if not sample:
        return False
    if b"\x00" in sample:
        return True
    ctrl = sum(1 for b in sample if b in _CTRL_BYTES)
    return ctrl / len(sample) > 0.10


def _try(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def decode_bytes(data: bytes, suffix: str = ".txt") -> tuple[str, str]:
    """Return ``(text, encoding)``; raise :class:`CorruptFile` for binary or undecodable content."""
    enc = _sniff_bom(data) or _sniff_wide(data)
    if enc:
        text = _try(data, enc)
        if text is not None and _bad_ratio(text) < 0.05:
            return text.lstrip("\ufeff"), enc
        if _sniff_bom(data):
            raise CorruptFile(f"cannot decode the {suffix} file as {enc} (bad bytes after the BOM)")
    if looks_binary(data):
        raise CorruptFile(f"binary content in a {suffix} file")
    text = _try(data, "utf-8")
    if text is not None:
        return text, "utf-8"
    return _guess_legacy(data, suffix)


def _guess_legacy(data: bytes, suffix: str) -> tuple[str, str]:
    candidates: list[tuple[float, int, str, str]] = []
    order = ["gb18030", "big5", "shift_jis", "euc_kr"]
    guessed = _charset_normalizer_guess(data)
    if guessed and guessed not in order:
        order.append(guessed)
    for rank, enc in enumerate(order):
        text = _try(data, enc)
        if text is None or _bad_ratio(text) > 0.01:
            continue
        score = _hangul_score(text) * 0.9 if enc == "euc_kr" else _han_score(text)
        candidates.append((score, -rank, enc, text))
    if candidates:
        score, _, enc, text = max(candidates)
        if score >= 0.5:
            return text, ("gbk" if enc == "gb18030" and _try(data, "gbk") is not None else enc)
    for enc in ("cp1252", "latin-1"):
        text = _try(data, enc)
        if text is not None and _bad_ratio(text) < 0.01:
            return text, enc
    raise CorruptFile(f"cannot detect the text encoding of the {suffix} file")


def _charset_normalizer_guess(data: bytes) -> str | None:
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - dependency is declared
        return None
    best = from_bytes(data[:200_000]).best()
    if best is None:
        return None
    logger.debug("charset-normalizer guessed %s (chaos %.2f)", best.encoding, best.chaos)
    return str(best.encoding)
