"""Text from files, folders and uploads shown as text: escaped for Streamlit's Markdown and for Plotly's HTML.

Streamlit renders Markdown in almost every string it shows (``st.markdown``, captions, alerts,
subheaders, metric labels and values, widget labels, radio options, image captions, table cells,
status and progress text, tooltips), with GitHub extensions, ``$`` math, ``:red[...]`` colours,
``:emoji:`` codes and bare-URL autolinks. A checkpoint's dataset name, its class names, a file or
folder name is data: ``md`` makes it render as the very characters it holds. Selectbox options
(``format_func``), ``st.code``, ``st.text`` and file names of downloads are plain text already.
Plotly renders a subset of HTML (``<a href>``, ``<b>``, ``<br>``) in legends, hover labels and
titles, and ``%{...}`` in hover templates: ``plot_text`` escapes those.
"""

from __future__ import annotations

import re

# What can start Markdown anywhere in a line: code, emphasis, links and images, HTML and autolinks,
# entities, strikethrough, math, Streamlit's :colour[...] directives, :emoji: and :material/ icons.
_INLINE_SPECIAL = re.compile(r"([\\`*_\[\]<>!&~$:])")
# What starts a block only at the start of a line (md's output has one line): headings, list items.
_BLOCK_START = re.compile(r"^( {0,3})([#+-])|^( {0,3}\d+)([.)])")
# Bare URLs, e-mail addresses and :emoji: codes are found in the parsed text, after escapes are undone
# (mdast-util-gfm-autolink-literal, remark-emoji): an invisible WORD JOINER breaks their patterns.
WORD_JOINER = "\u2060"
_AUTOLINK_STARTS = re.compile(r"(\\:)(?=\\?[\w/+-])|(@)(?=\\?[\w-])|(www)(?=\.)", re.IGNORECASE)
_BACKTICK_RUNS = re.compile("`+")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")


def md(value: object) -> str:
    """Return ``str(value)`` escaped for Markdown, on one line, so that it renders as exactly its characters.

    Backslashes every character that can start inline Markdown (CommonMark allows escaping any
    ASCII punctuation), and a ``#``, ``-``, ``+`` or ``1.`` at the start, where a heading or a list
    item would begin: no emphasis, link, image, HTML, entity, math, colour, icon or heading. Bare
    URLs (``http://``, ``www.``), e-mail addresses and ``:emoji:`` codes are matched after escapes
    are undone, so an invisible word joiner (U+2060) follows ``:`` and ``@`` before a word character
    and splits ``www.``. Line breaks become spaces. Other punctuation stays as it is, so names like
    ``mnist-conv-16`` read the same in the Markdown source (and in labels screen readers announce).
    """
    escaped = _INLINE_SPECIAL.sub(r"\\\1", _LINE_BREAKS.sub(" ", str(value)))
    escaped = _BLOCK_START.sub(lambda m: f"{m[1]}\\{m[2]}" if m[2] else f"{m[3]}\\{m[4]}", escaped, count=1)
    return _AUTOLINK_STARTS.sub(lambda m: (m[1] or m[2] or m[3]) + WORD_JOINER, escaped)


def md_lines(value: object) -> str:
    """Return ``str(value)`` escaped like ``md``, its lines kept as Markdown line breaks."""
    return "  \n".join(md(line) for line in str(value).splitlines())


def code(value: object) -> str:
    """Return ``str(value)`` as a Markdown code span that holds it literally, backticks included.

    The fence is one backtick longer than the longest run inside (CommonMark 6.1), padded with a
    space when the text starts or ends with a backtick or a space. Streamlit rewrites ``:material/`` even
    inside code spans (to draw icons), so such text is escaped with ``md`` instead.
    """
    text = _LINE_BREAKS.sub(" ", str(value))
    if not text.strip() or ":material/" in text:
        return md(text)
    fence = "`" * (max((len(run) for run in _BACKTICK_RUNS.findall(text)), default=0) + 1)
    # CommonMark strips one space from each end when both have one: pad so nothing of the text is lost.
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def plot_text(value: object) -> str:
    """Return ``str(value)`` escaped for Plotly text (legend names, hover text and templates, titles).

    ``<``, ``>`` and ``&`` become entities (Plotly turns entities back into characters, never into
    tags), ``%`` becomes ``&#37;`` so ``%{...}`` is no template, ``$`` becomes ``&#36;`` (no LaTeX).
    """
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("%", "&#37;").replace("$", "&#36;")
