"""Rendering: a ``Digest`` into a ``Rendered`` email, an HTML part and a plain-text part.

The templates (``templates/``, or a ``templates_dir`` that overrides them by name) are Jinja
producing MJML, compiled with mjml-python and inlined with premailer (``_templates``: the
per-email path), plus a text part wrapped at 78 columns (``_textfmt``). The compiled fast
path (``_fast``, assembling the ``_pieces`` of templates compiled once per edition) gives
the same bytes for a fraction of the cost; ``_cards`` says what each paper's card shows.
"""

from __future__ import annotations

from ._cards import Card, date_label, make_card
from ._renderer import Renderer
from ._templates import builtin_templates, compile_mjml, inline_css, mjml_to_html
from ._textfmt import clean_text, safe_url, shorten

__all__ = [
    "Card",
    "Renderer",
    "builtin_templates",
    "clean_text",
    "compile_mjml",
    "date_label",
    "inline_css",
    "make_card",
    "mjml_to_html",
    "safe_url",
    "shorten",
]
