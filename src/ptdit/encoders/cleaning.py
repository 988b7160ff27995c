"""Caption cleaning exactly as the released Qihoo-T2X pipeline does it before tokenization.

See docs/inference.md#text-encoding.

The reference (MindSpeed-MM `QihooPipeline`, via `TextProcesser.text_preprocessing`) runs the
PixArt-alpha / DeepFloyd-IF caption cleaner twice and strips the result; the negative prompt is only
lower-cased and stripped. The cleaner is a fixed sequence of regex rewrites plus three library calls
(`urllib.parse.unquote_plus`, BeautifulSoup's `html.parser` text extraction and `ftfy.fix_text`). The
steps below reproduce that sequence in the reference order, one commented rule per step; the order matters
(several rules only fire on what an earlier one left behind), and so do the quirks, which are kept on
purpose and marked "(quirk)".

ftfy and beautifulsoup4 come with the `[hub]` extra; `clean_caption` raises an ImportError naming it when
either is missing (there is no approximate fallback: it would feed the tokenizer different text).
"""

from __future__ import annotations

import html
import re
import urllib.parse
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["clean_caption", "clean_caption_once", "normalize_negative_prompt", "require_cleaning_dependencies"]

# ------------------------------------------------------------------------------------------------------
# Patterns (in the order they are applied)
# ------------------------------------------------------------------------------------------------------

# A host name with one of eight top-level domains, optionally followed by a path; not when an "@" follows
# (so e-mail-like "name.com@" survives). Shared by both URL passes.
_HOST = r"[a-zA-Z0-9.\-]+\.(?:com|co|ru|net|org|edu|gov|it)[\w/-]*\b/?(?!@)"
# Pass 1: an "http:" / "https:" scheme plus 1-3 slashes or one more character (the rest of the URL is only
# removed if it matches _HOST), or a bare host.
_URL_SCHEME = re.compile(rf"\b(?:https?:(?:/{{1,3}}|[a-zA-Z0-9%])|{_HOST})")
# Pass 2 (quirk): the reference spells the prefix "www:" with a colon, so "www." hosts are removed by the
# _HOST branch only. Running _HOST twice is not a no-op: pass 1 may expose a new host.
_URL_WWW = re.compile(rf"\b(?:www:(?:/{{1,3}}|[a-zA-Z0-9%])|{_HOST})")

_NICKNAME = re.compile(r"@[\w\d]+\b")  # @user_name
# CJK strokes, Katakana phonetic extensions, enclosed CJK, CJK compatibility, CJK ideographs (extension A,
# Yijing hexagrams, unified): U+31C0..U+9FFF. The reference deletes seven adjacent ranges one by one, which
# is the same as deleting their union. Hiragana and Katakana proper (U+3040..U+30FF) are kept.
_CJK = re.compile(r"[\u31c0-\u9fff]+")
# Every kind of dash, a run of them becoming one "-": hyphen-minus, Armenian hyphen, Hebrew maqaf, Canadian
# syllabics hyphen, Mongolian todo soft hyphen, U+2010..U+2015 (hyphen ... horizontal bar), double oblique
# hyphen, hyphen with diaeresis, two- and three-em dash, double hyphen, wave dash, wavy dash, katakana-hiragana
# double hyphen, vertical em / en dash, small em dash, small hyphen-minus, fullwidth hyphen-minus.
_DASHES = re.compile(
    "[\u002d\u058a\u05be\u1400\u1806\u2010-\u2015\u2e17\u2e1a\u2e3a\u2e3b\u2e40"
    "\u301c\u3030\u30a0\ufe31\ufe32\ufe58\ufe63\uff0d]+"
)
# Grave accent, acute accent, left / right guillemets, left / right double quotes, diaeresis -> '"'.
_DOUBLE_QUOTES = re.compile("[`\u00b4\u00ab\u00bb\u201c\u201d\u00a8]")
_SINGLE_QUOTES = re.compile("[\u2018\u2019]")  # left / right single quotes -> "'"
_QUOT_ENTITY = re.compile(r"&quot;?")  # leftovers of double-escaped entities
_AMP_ENTITY = re.compile(r"&amp")  # (quirk) the ";" stays: "&amp;amp;" ends as ";"
_IP_ADDRESS = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
# "Article ids": fires only on whitespace an earlier rule left at the end (e.g. "12:45 <removed url>").
_TRAILING_TIME = re.compile(r"\d:\d\d\s+$")
_LITERAL_NEWLINE = re.compile(r"\\n")  # a backslash followed by "n" (an escaped newline), not a real newline
_SHORT_HASH_NUMBER = re.compile(r"#\d{1,3}\b")  # "#1" .. "#999"
_LONG_HASH_NUMBER = re.compile(r"#\d{5,}\b")  # "#12345" and longer ("#1234" is kept)
_LONG_NUMBER = re.compile(r"\b\d{6,}\b")  # six or more digits
_FILENAME = re.compile(r"\S+\.(?:png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4)")  # no end anchor: "a.pngx" -> "x"
_REPEATED_QUOTES = re.compile(r"[\"']{2,}")  # -> one '"'
_ELLIPSIS = re.compile(r"\.{2,}")  # -> " "
# Runs of these characters become one space: # registered bullet copyright trademark & @ middle-dot
# masculine-ordinal one-half three-quarters inverted-? inverted-! section ~ ( ) [ ] { } | \ / *
_BAD_PUNCTUATION = re.compile(
    "[#\u00ae\u2022\u00a9\u2122&@\u00b7\u00ba\u00bd\u00be\u00bf\u00a1\u00a7~" + r"()\[\]{}|\\/*" + "]+"
)
_LONE_PERIOD = re.compile(r"\s+\.\s+")  # " . " -> " "
_HYPHEN_OR_UNDERSCORE = re.compile(r"[-_]")  # all become spaces when there are more than three

# After ftfy / unescaping: product codes and similar tokens.
_LETTERS_THEN_DIGITS = re.compile(r"\b[a-zA-Z]{1,3}\d{3,15}\b")  # jc6640
_LETTERS_DIGITS_LETTERS = re.compile(r"\b[a-zA-Z]+\d+[a-zA-Z]+\b")  # jc6640vc, r2d
_DIGITS_LETTERS_DIGITS = re.compile(r"\b\d+[a-zA-Z]+\d+\b")  # 6640vc231
# Shop and stock-photo boilerplate.
_SHIPPING = re.compile(r"(?:worldwide\s+)?(?:free\s+)?shipping")
_DOWNLOAD = re.compile(r"(?:free\s)?download(?:\sfree)?")
_CLICK_FOR = re.compile(r"\bclick\b\s(?:for|on)\s\w+")  # "click for details", "click on image"
_FILE_TYPE = re.compile(r"\b(?:png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4)(?:\simages?)?")  # no end anchor (quirk)
_PAGE_NUMBER = re.compile(r"\bpage\s+\d+\b")
_MIXED_CODE = re.compile(r"\b\d*[a-zA-Z]+\d+[a-zA-Z]+\d+[a-zA-Z\d]*\b")  # j2d1a2a -> " "
_DIMENSIONS = re.compile(r"\b\d+\.?\d*[x\u0445\u00d7]\d+\.?\d*\b")  # 1920x1080, 2.5x3.5 (Latin x, Cyrillic x, times)
_SPACED_COLON = re.compile(r"\b\s+:\s+")  # "a : b" -> "a: b"
_PUNCT_BEFORE_WORD = re.compile(r"(\D[,./])\b")  # "a,b" -> "a, b" (not after a digit: "2.5" stays)
_WHITESPACE = re.compile(r"\s+")

# Final trimming. The reference calls `caption.strip()` here without using the result (quirk), so a leading
# or trailing space left by the rules above blocks the anchored rules below.
_SURROUNDING_QUOTES = re.compile(r"^[\"']([\w\W]+)[\"']$")  # one pair, any quote kinds
_LEADING_PUNCTUATION = re.compile(r"^['_,\-:;]")  # one character
_TRAILING_PUNCTUATION = re.compile(r"['_,\-:+]$")  # one character
_DOTTED_WORD = re.compile(r"^\.\S+$")  # the whole caption is one token starting with "."


# ------------------------------------------------------------------------------------------------------
# Optional dependencies
# ------------------------------------------------------------------------------------------------------


def require_cleaning_dependencies() -> tuple[Callable[[str], str], Any]:
    """Import ftfy and BeautifulSoup, or raise an ImportError naming the `[hub]` extra.

    Returns:
        `(ftfy.fix_text, bs4.BeautifulSoup)`.
    """
    missing = []
    try:
        import ftfy
    except ImportError:
        missing.append("ftfy")
    try:
        import bs4
    except ImportError:
        missing.append("beautifulsoup4")
    if missing:
        raise ImportError(
            f"caption cleaning (the reference's clean_caption) needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed; install with: pip install ptdit[hub] "
            f"(or pip install ftfy beautifulsoup4)"
        )
    return ftfy.fix_text, bs4.BeautifulSoup


def _html_text(text: str, beautiful_soup: Any) -> str:
    """Text content of `text` parsed as HTML with Python's html.parser (tags dropped, entities decoded)."""
    from bs4 import MarkupResemblesLocatorWarning, ParserRejectedMarkup

    # bs4 warns when a short caption looks like a file name or URL ("photo.jpg"); for captions that is
    # expected input, not a mistake, so only that warning is silenced.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        try:
            return beautiful_soup(text, features="html.parser").text
        except ParserRejectedMarkup as exc:  # e.g. "<![x": the reference pipeline fails on these too
            raise ValueError(
                f"cannot clean caption {text!r:.120}: Python's html.parser, which the reference cleaner uses, "
                "rejects it as malformed markup; edit the markup out of the prompt or turn caption cleaning off"
            ) from exc


# ------------------------------------------------------------------------------------------------------
# Cleaning
# ------------------------------------------------------------------------------------------------------


# long function: the reference's rules in the reference's order, one line each; splitting it would hide the order.
def clean_caption_once(text: str) -> str:
    """One pass of the PixArt / DeepFloyd caption cleaner (lower-cases; removes URLs, HTML, codes, noise).

    `clean_caption` runs this twice, as the reference pipeline does; use that one for prompts.

    Args:
        text: a caption.

    Returns:
        The cleaned caption, stripped.
    """
    fix_text, beautiful_soup = require_cleaning_dependencies()
    text = urllib.parse.unquote_plus(str(text))  # "%25" -> "%", "+" -> " "
    text = text.strip().lower()
    text = text.replace("<person>", "person")  # keep the word when the tag is dropped below

    # 1. URLs, HTML, nicknames, CJK ideographs.
    text = _URL_SCHEME.sub("", text)
    text = _URL_WWW.sub("", text)
    text = _html_text(text, beautiful_soup)
    text = _NICKNAME.sub("", text)
    text = _CJK.sub("", text)

    # 2. Normalise dashes and quotes; drop entity leftovers, IP addresses, ids, numbers and file names.
    text = _DASHES.sub("-", text)
    text = _DOUBLE_QUOTES.sub('"', text)
    text = _SINGLE_QUOTES.sub("'", text)
    text = _QUOT_ENTITY.sub("", text)
    text = _AMP_ENTITY.sub("", text)
    text = _IP_ADDRESS.sub(" ", text)
    text = _TRAILING_TIME.sub("", text)
    text = _LITERAL_NEWLINE.sub(" ", text)
    text = _SHORT_HASH_NUMBER.sub("", text)
    text = _LONG_HASH_NUMBER.sub("", text)
    text = _LONG_NUMBER.sub("", text)
    text = _FILENAME.sub("", text)

    # 3. Punctuation noise; snake_case / kebab-case captions with more than three separators become words.
    text = _REPEATED_QUOTES.sub('"', text)
    text = _ELLIPSIS.sub(" ", text)
    text = _BAD_PUNCTUATION.sub(" ", text)
    text = _LONE_PERIOD.sub(" ", text)
    if len(_HYPHEN_OR_UNDERSCORE.findall(text)) > 3:
        text = _HYPHEN_OR_UNDERSCORE.sub(" ", text)

    # 4. Repair mojibake, unescape twice (after the rules above, as the reference does), strip.
    text = fix_text(text)
    text = html.unescape(html.unescape(text)).strip()

    # 5. Product codes, shop boilerplate, page numbers, dimensions.
    text = _LETTERS_THEN_DIGITS.sub("", text)
    text = _LETTERS_DIGITS_LETTERS.sub("", text)
    text = _DIGITS_LETTERS_DIGITS.sub("", text)
    text = _SHIPPING.sub("", text)
    text = _DOWNLOAD.sub("", text)
    text = _CLICK_FOR.sub("", text)
    text = _FILE_TYPE.sub("", text)
    text = _PAGE_NUMBER.sub("", text)
    text = _MIXED_CODE.sub(" ", text)
    text = _DIMENSIONS.sub("", text)

    # 6. Spacing around punctuation, collapse whitespace.
    text = _SPACED_COLON.sub(": ", text)
    text = _PUNCT_BEFORE_WORD.sub(r"\1 ", text)
    text = _WHITESPACE.sub(" ", text)

    # 7. Trim quotes and stray punctuation at the ends (no strip before this: see _SURROUNDING_QUOTES).
    text = _SURROUNDING_QUOTES.sub(r"\1", text)
    text = _LEADING_PUNCTUATION.sub("", text)
    text = _TRAILING_PUNCTUATION.sub("", text)
    text = _DOTTED_WORD.sub("", text)
    return text.strip()


def clean_caption(text: str) -> str:
    """Clean a prompt exactly as the released pipeline does before tokenizing it.

    The PixArt / DeepFloyd cleaner runs twice (a second pass still changes some captions, e.g. when the
    first pass exposes a new URL or product code), then the result is stripped. The output is lower-case.

    Args:
        text: a raw prompt.

    Returns:
        The text the reference feeds to its T5 tokenizer.

    Raises:
        ImportError: if ftfy or beautifulsoup4 is missing (`pip install ptdit[hub]`).
    """
    return clean_caption_once(clean_caption_once(text)).strip()


def normalize_negative_prompt(text: str) -> str:
    """The reference's treatment of the negative prompt: lower-cased and stripped, not cleaned."""
    return text.lower().strip()
