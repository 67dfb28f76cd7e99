"""Simple LaTeX made readable in titles, abstracts and author names.

One converter for the feed parsers (when a paper is read) and for rendering (when a card is
drawn): accents (``\\'e`` -> é, ``{\\l}`` -> ł, ``\\v{z}`` -> ž), math in ``$...$``,
``$$...$$`` and ``\\(...\\)`` (``$\\alpha^2$`` -> α², ``$O(n^2)$`` -> O(n²),
``$\\mathbb{R}^d$`` -> ℝ^d, ``$\\frac{a}{b}$`` -> a/b, ``$20\\%$`` -> 20%), style commands
(``\\textit{x}`` -> x), ``\\href{url}{text}``, escaped characters and ties (``40~K``).
Anything not understood is left as it is: this is for reading, not typesetting. Money
(``$5 and $10``) is not math. Running it twice gives the same text as running it once on
everything the feeds produce, so rendering may clean text the sources already cleaned.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["latex_to_text"]

# fmt: off
_ACCENTS = {
    "'": "\u0301", "`": "\u0300", "^": "\u0302", '"': "\u0308", "~": "\u0303",
    "=": "\u0304", ".": "\u0307", "u": "\u0306", "v": "\u030c", "H": "\u030b",
    "c": "\u0327", "k": "\u0328", "r": "\u030a", "d": "\u0323", "b": "\u0331",
}
_LETTERS = {
    "l": "ł", "L": "Ł", "o": "ø", "O": "Ø", "ss": "ß", "ae": "æ", "AE": "Æ", "oe": "œ",
    "OE": "Œ", "aa": "å", "AA": "Å", "i": "ı", "j": "ȷ", "dh": "ð", "DH": "Ð", "th": "þ",
    "TH": "Þ", "ng": "ŋ", "NG": "Ŋ",
}
_SYMBOLS = {
    # Greek
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε",
    "zeta": "ζ", "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ",
    "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π", "varpi": "ϖ", "rho": "ρ",
    "varrho": "ϱ", "sigma": "σ", "varsigma": "ς", "tau": "τ", "upsilon": "υ", "phi": "φ",
    "varphi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω",
    "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ", "Pi": "Π",
    "Sigma": "Σ", "Upsilon": "Υ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
    # operators and relations
    "times": "×", "cdot": "·", "pm": "±", "mp": "∓", "div": "÷", "ast": "∗", "star": "⋆",
    "circ": "∘", "oplus": "⊕", "otimes": "⊗", "leq": "≤", "le": "≤", "geq": "≥", "ge": "≥",
    "neq": "≠", "ne": "≠", "approx": "≈", "sim": "∼", "simeq": "≃", "equiv": "≡",
    "lesssim": "≲", "gtrsim": "≳", "ll": "≪", "gg": "≫", "propto": "∝", "infty": "∞",
    "partial": "∂", "nabla": "∇", "sum": "∑", "prod": "∏", "int": "∫", "sqrt": "√",
    "in": "∈", "notin": "∉", "subset": "⊂", "subseteq": "⊆", "supset": "⊃", "cup": "∪",
    "cap": "∩", "forall": "∀", "exists": "∃", "emptyset": "∅", "neg": "¬", "land": "∧",
    "lor": "∨", "wedge": "∧", "vee": "∨", "ni": "∋", "setminus": "∖", "top": "⊤", "perp": "⊥",
    "mid": "|", "vert": "|", "colon": ":", "lceil": "⌈", "rceil": "⌉", "lfloor": "⌊",
    "rfloor": "⌋",
    # arrows
    "to": "→", "rightarrow": "→", "leftarrow": "←", "Rightarrow": "⇒", "Leftarrow": "⇐",
    "Leftrightarrow": "⇔", "leftrightarrow": "↔", "mapsto": "↦", "uparrow": "↑",
    "downarrow": "↓", "longrightarrow": "⟶", "Longrightarrow": "⟹",
    # letters and marks
    "ell": "ℓ", "hbar": "ℏ", "degree": "°", "textdegree": "°", "dagger": "†", "prime": "′",
    "checkmark": "✓", "ldots": "…", "cdots": "⋯", "dots": "…", "langle": "⟨", "rangle": "⟩",
    "textbackslash": "\\", "textasciitilde": "~", "textendash": "–", "textemdash": "—",
    "LaTeX": "LaTeX", "TeX": "TeX",
    # operator names
    "log": "log", "ln": "ln", "exp": "exp", "sin": "sin", "cos": "cos", "max": "max",
    "min": "min", "arg": "arg", "lim": "lim", "det": "det", "sup": "sup", "inf": "inf",
    "tan": "tan",
    # escapes, spacing and sizing
    "%": "%", "&": "&", "_": "_", "#": "#", "$": "$", "{": "{", "}": "}",
    ",": " ", ";": " ", ":": " ", "!": "", " ": " ", "quad": " ", "qquad": " ",
    "left": "", "right": "", "big": "", "Big": "", "bigl": "", "bigr": "", "Bigl": "",
    "Bigr": "", "displaystyle": "", "limits": "", "rm": "", "bf": "", "it": "", "em": "",
    "sf": "", "tt": "", "sl": "", "cal": "",
}
# What a superscript of these reads as: V^* -> V*, 90^\circ -> 90°.
_SCRIPT_WORDS = {
    "*": "*", "\\ast": "*", "\\star": "*", "\\circ": "°", "\\prime": "′", "\\top": "ᵀ",
    "\\dagger": "†",
}
_SUPER = dict(zip("0123456789+-=()niT", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱᵀ", strict=True))
_SUB = dict(zip("0123456789+-=()aeoxijklmnpst", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₒₓᵢⱼₖₗₘₙₚₛₜ", strict=True))
_BLACKBOARD = {"R": "ℝ", "N": "ℕ", "Z": "ℤ", "Q": "ℚ", "C": "ℂ", "E": "𝔼", "P": "ℙ"}
# fmt: on

_WRAPPERS = (
    "textbf|textit|emph|texttt|textrm|textsf|textsc|textup|textnormal|text|mathrm|mathbf|"
    "mathit|mathsf|mathtt|mathcal|mathbb|mathfrak|mathscr|boldsymbol|bm|operatorname|mbox|"
    "hbox|url|underline|overline|hat|tilde|bar|vec|dot|ddot|widehat|widetilde|textsuperscript|"
    "rm|bf|it|em|sf|tt|sl|sc|cal"
)
# Both start with a backslash (which keeps them fast); braces around, as in K{\\"a}hler, go
# with the command (see _bracketed).
_ACCENT_RE = re.compile(
    r"\\([`'^\"~=.]|[uvHckrdb](?![a-zA-Z]))\s*"
    r"(?:\{\s*(\\[ij]|[A-Za-z])\s*\}|(\\[ij](?![a-zA-Z])|[A-Za-z]))"
)
_LETTER_RE = re.compile(r"\\(ss|ae|AE|oe|OE|aa|AA|dh|DH|th|TH|ng|NG|[lLoOij])(?![a-zA-Z])(\s?)")
_BARE_LETTERS = frozenset(("ss", "ae", "AE", "oe", "OE", "aa", "AA", "l", "L", "o", "O"))
_OPEN, _CLOSE = "\x02", "\x03"
_HREF_RE = re.compile(r"\\href\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_COLOR_RE = re.compile(
    r"\\textcolor\s*\{[^{}]*\}\s*\{([^{}]*)\}"
    r"|\{\\color\s*\{[^{}]*\}\s*([^{}]*)\}|\\color\s*\{[^{}]*\}\s*"
)
_SWITCH_RE = re.compile(r"\{\\(?:it|bf|em|rm|sf|tt|sc|sl|cal)(?![A-Za-z])\s*([^{}]*)\}")
# $...$ is math when it starts and ends next to a non-space and its opening $ is not
# escaped ("$5 and $10", "\$5" are money); see _math_span for "$5-$10".
_MATH_RE = re.compile(r"\$(?:\$(.{1,2000}?)\$\$|(?=\S)([^$]{1,300}?)(?<=\S)\$)", re.S)
_PAREN_MATH_RE = re.compile(r"\\\((.{1,2000}?)\\\)", re.S)
# A tie joins two words (Fig.~1, i.i.d.~data, Learning~(PRL)); "(~1000" and "/~user" are
# not ties.
_TIE_RE = re.compile(r"~(?=[\w(\\$])")
_TIE_AFTER = frozenset(".,;:)]}$%")
_SPACING_RE = re.compile(
    r"\\[mh]?kern\s*-?[\d.]+\s*(?:mu|em|ex|pt)\s*|\\[mh]?skip\s*-?[\d.]+\w*\s*"
)
_UNICODE_RE = re.compile(r"\\unicode\s*\{\s*x?([0-9A-Fa-f]{2,6})\s*\}")
_BB_RE = re.compile(r"\\mathbb\s*(?:\{\s*([A-Za-z])\s*\}|([A-Za-z])(?![A-Za-z]))")
_WRAP_RE = re.compile(rf"\\(?:{_WRAPPERS})\s*\{{([^{{}}]*)\}}")
_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_SQRT_RE = re.compile(r"\\sqrt\s*\{([^{}]*)\}")
_SCRIPT_RE = re.compile(r"([\^_])\s*(?:\{([^{}]*)\}|(\\[A-Za-z]+|[A-Za-z0-9*+\-]))")
# Once commands are gone, a script of one character not starting a word: x^2 but not \min.
_LATE_SCRIPT_RE = re.compile(r"([\^_])\s*()([A-Za-z0-9*+\-])(?![A-Za-z])")
_DASH_RE = re.compile(r"\\text(en|em)dash(?![A-Za-z])\s?")
_COMMAND_RE = re.compile(r"\\([A-Za-z]+)")
_SYMBOL_RE = re.compile(r"\\([A-Za-z]+|[%&_#${},;:! ])")
_BRACE_RE = re.compile(r"(?<!\\)[{}]")
_OPERATOR_CHARS = re.compile(r"[\s+\-*/=,]")
_SCRIPT_PARENS = re.compile(r"[\^_]\([^()]*\)")
_SPACES = re.compile(r" {2,}")
# Put where a removed command would leave two commands' names touching (\in\mathcal{W} ->
# \in W, not \inW); taken out once the commands are replaced.
_SEP = "\x01"


def latex_to_text(text: str | None) -> str:
    """``text`` with simple LaTeX turned into Unicode; unknown commands are kept."""
    if not text:
        return ""
    if "\\" not in text and "$" not in text and "~" not in text:
        return text
    if "\\" in text:
        text = _ACCENT_RE.sub(_accent, text)
        text = _LETTER_RE.sub(_letter, text)
        if _OPEN in text:
            text = text.replace("{" + _OPEN, "").replace(_CLOSE + "}", "")
        if "\\href" in text:
            text = _HREF_RE.sub(_href, text)
    if "~" in text:
        text = _TIE_RE.sub(_tie, text)
    if "$" in text:
        text = _MATH_RE.sub(_math_span, text)
    if "\\(" in text:
        text = _PAREN_MATH_RE.sub(lambda m: _math(m.group(1)), text)
    if "\\" in text:
        text = _SPACING_RE.sub("", text)
        text = _UNICODE_RE.sub(_codepoint, text)
        text = _BB_RE.sub(_blackboard, text)
        text = _DASH_RE.sub(lambda m: "–" if m.group(1) == "en" else "—", text)
        for _ in range(3):  # nested wrappers: \textbf{\underline{Ca}}
            new = _WRAP_RE.sub(_unwrap, text)
            new = _SWITCH_RE.sub(_unwrap, new)
            if "color" in new:
                new = _COLOR_RE.sub(lambda m: m.group(1) or m.group(2) or "", new)
            if "\\href" in new:
                new = _HREF_RE.sub(_href, new)
            new = _FRAC_RE.sub(_frac, new)
            new = _SQRT_RE.sub(_sqrt, new)
            if new == text:
                break
            text = new
        text = _SYMBOL_RE.sub(_text_symbol, text)
    return text.replace(_SEP, "") if _SEP in text else text


def _accent(m: re.Match[str]) -> str:
    mark, letter = m.group(1), m.group(2) or m.group(3)
    base = {"\\i": "i", "\\j": "j"}.get(letter, letter)
    return _bracketed(m, unicodedata.normalize("NFC", base + _ACCENTS[mark]))


def _letter(m: re.Match[str]) -> str:
    name, space = m.group(1), m.group(2)
    if not space and _braced(m):
        return _OPEN + _LETTERS[name] + _CLOSE
    return _LETTERS[name] if name in _BARE_LETTERS else m.group(0)


def _braced(m: re.Match[str]) -> bool:
    """Whether braces of their own enclose the match: {\\l} and K{\\"a}hler, not \\emph{\\l}."""
    text, start, end = m.string, m.start(), m.end()
    return (
        text[start - 1 : start] == "{"
        and text[end : end + 1] == "}"
        and not _command_before(text, start - 1)
    )


def _bracketed(m: re.Match[str], out: str) -> str:
    """``out``, marked to take its own braces with it (removed once all are replaced)."""
    return _OPEN + out + _CLOSE if _braced(m) else out


def _tie(m: re.Match[str]) -> str:
    start = m.start()
    prev = m.string[start - 1 : start]
    return " " if prev and (prev.isalnum() or prev == "_" or prev in _TIE_AFTER) else "~"


def _href(m: re.Match[str]) -> str:
    url, label = m.group(1).strip(), m.group(2).strip()
    return url if not label or label == url or "://" in label else f"{label} ({url})"


def _codepoint(m: re.Match[str]) -> str:
    return chr(int(m.group(1), 16))


def _blackboard(m: re.Match[str]) -> str:
    letter = m.group(1) or m.group(2)
    return _joined(m, _BLACKBOARD.get(letter, letter))


def _unwrap(m: re.Match[str]) -> str:
    return _joined(m, m.group(1))


def _joined(m: re.Match[str], out: str) -> str:
    """``out`` in place of ``m``, kept apart from a command just before it: \\in\\mathcal{W}."""
    if out[:1].isascii() and out[:1].isalpha() and _command_before(m.string, m.start()):
        return _SEP + out
    return out


def _command_before(text: str, start: int) -> bool:
    """Whether ``text[:start]`` ends with a command's name (a backslash and letters)."""
    i = start
    while i > 0 and text[i - 1].isascii() and text[i - 1].isalpha():
        i -= 1
    return 0 < i < start and text[i - 1] == "\\"


def _math_span(m: re.Match[str]) -> str:
    text, start, end = m.string, m.start(), m.end()
    if text[start - 1 : start] == "\\":
        return m.group(0)  # \$5: an escaped dollar
    body = m.group(1) or m.group(2)
    if m.group(2) and body[0].isdigit() and text[end : end + 1].isdigit():
        return m.group(0)  # "$5-$10": money on both sides
    return _math(body)


def _math(body: str) -> str:
    body = _SPACING_RE.sub("", body)
    body = _UNICODE_RE.sub(_codepoint, body)
    body = _BB_RE.sub(_blackboard, body)
    for _ in range(3):  # nested groups such as \frac{\mathbf{x}}{T^{1/3}}
        new = _WRAP_RE.sub(_unwrap, body)
        new = _SWITCH_RE.sub(_unwrap, new)
        new = _SCRIPT_RE.sub(_script, new)
        new = _FRAC_RE.sub(_frac, new)
        new = _SQRT_RE.sub(_sqrt, new)
        if new == body:
            break
        body = new
    body = _BRACE_RE.sub(_SEP, body).replace("~", " ")  # \propto{r}: not \proptor
    body = _SYMBOL_RE.sub(_math_symbol, body)
    body = _LATE_SCRIPT_RE.sub(_script, body).replace("\\", "")
    return _SPACES.sub(" ", body.replace(_SEP, "")).strip()


def _script(m: re.Match[str]) -> str:
    kind, body = m.group(1), (m.group(2) or m.group(3) or "").strip()
    if kind == "^" and body in _SCRIPT_WORDS:
        return _SCRIPT_WORDS[body]
    table = _SUPER if kind == "^" else _SUB
    if not body:
        return ""
    if all(ch in table for ch in body):
        return "".join(table[ch] for ch in body)
    if len(body) == 1 or body.startswith("\\"):
        return kind + body
    return f"{kind}({body})"


def _frac(m: re.Match[str]) -> str:
    return _joined(m, f"{_group(m.group(1))}/{_group(m.group(2))}")


def _sqrt(m: re.Match[str]) -> str:
    return "√" + _group(m.group(1))


def _group(text: str) -> str:
    """A fraction's part, in parentheses unless it reads as one term: a/b, 1/T^(1/3), (a+b)."""
    text = text.strip()
    if not _OPERATOR_CHARS.search(_SCRIPT_PARENS.sub("", text)) or _enclosed(text):
        return text
    return f"({text})"


def _enclosed(text: str) -> bool:
    """Whether one pair of parentheses encloses all of ``text``."""
    if not (text.startswith("(") and text.endswith(")")):
        return False
    depth = 0
    for ch in text[1:-1]:
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            return False
    return depth == 0


def _math_symbol(m: re.Match[str]) -> str:
    return _spaced(m, _output(m.group(1), in_math=True), in_math=True)


def _text_symbol(m: re.Match[str]) -> str:
    out = _SYMBOLS.get(m.group(1))
    return m.group(0) if out is None else _spaced(m, out, in_math=False)


def _output(name: str, *, in_math: bool) -> str:
    """What the command ``\\name`` becomes; unknown in math: an operator name, \\ker -> ker."""
    out = _SYMBOLS.get(name)
    return out if out is not None else name if in_math else "\\" + name


def _is_word(text: str) -> bool:
    return len(text) > 1 and text.isalpha()


def _spaced(m: re.Match[str], out: str, *, in_math: bool) -> str:
    """Operator names kept apart from their neighbours: ``\\ln\\ln T`` -> ``ln ln T``.

    A word gets a space before it after a letter or digit, and after it before a letter or
    digit; of two words in a row only the second adds the space between them.
    """
    if not _is_word(out):
        return out
    text, start, end = m.string, m.start(), m.end()
    i = start
    while i > 0 and text[i - 1].isascii() and text[i - 1].isalpha():
        i -= 1
    if 0 < i < start and text[i - 1] == "\\":  # after another command: what did it become?
        before = _output(text[i:start], in_math=in_math)
        space_before = before[-1:].isalnum()
    else:
        prev = text[start - 1 : start]
        space_before = i < start or (prev.isascii() and prev.isdigit())
    nxt = text[end : end + 2].lstrip(_SEP)[:1]
    if nxt == "\\":
        command = _COMMAND_RE.match(text, end)
        after = _output(command.group(1), in_math=in_math) if command else ""
        space_after = after[:1].isalnum() and not _is_word(after)
    else:
        space_after = nxt.isascii() and nxt.isalnum()
    return (" " if space_before else "") + out + (" " if space_after else "")
