"""Text helpers shared by rendering and sources: LaTeX to Unicode, safe links, trimming, wrapping.

Everything here is pure and cheap; nothing reads the clock or the network.
"""

from __future__ import annotations

import re
import textwrap
from functools import lru_cache
from urllib.parse import quote, urlsplit

# ---------------------------------------------------------------- cleaning

# Control characters, and the bidi overrides that can disguise text, become spaces.
_CONTROL = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]"
)
_SPACES = re.compile(r"\s+")


def one_line(text: str | None) -> str:
    """Collapse all whitespace (CR/LF included) to single spaces and drop control characters."""
    if not text:
        return ""
    if text.isprintable() and "  " not in text and text[0] != " " and text[-1] != " ":
        return text  # the common case, checked in C
    return _SPACES.sub(" ", _CONTROL.sub(" ", text).replace("\xa0", " ")).strip()


@lru_cache(maxsize=65_536)
def clean_text(text: str | None) -> str:
    """One line of readable text: whitespace collapsed, simple LaTeX turned into Unicode."""
    return one_line(latex_to_text(one_line(text)))


# ---------------------------------------------------------------- LaTeX

# fmt: off
_SYMBOLS = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε",
    "zeta": "ζ", "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ",
    "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π", "varpi": "ϖ", "rho": "ρ",
    "varrho": "ϱ", "sigma": "σ", "varsigma": "ς", "tau": "τ", "upsilon": "υ", "phi": "φ",
    "varphi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω",
    "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ", "Pi": "Π",
    "Sigma": "Σ", "Upsilon": "Υ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
    "times": "×", "cdot": "·", "cdots": "⋯", "ldots": "…", "dots": "…", "pm": "±", "mp": "∓",
    "leq": "≤", "le": "≤", "geq": "≥", "ge": "≥", "neq": "≠", "ne": "≠", "approx": "≈",
    "sim": "~", "simeq": "≃", "equiv": "≡", "propto": "∝", "infty": "∞", "partial": "∂",
    "nabla": "∇", "sum": "∑", "prod": "∏", "int": "∫", "in": "∈", "notin": "∉",
    "subset": "⊂", "subseteq": "⊆", "supset": "⊃", "cup": "∪", "cap": "∩", "forall": "∀",
    "exists": "∃", "emptyset": "∅", "to": "→", "rightarrow": "→", "leftarrow": "←",
    "Rightarrow": "⇒", "Leftarrow": "⇐", "leftrightarrow": "↔", "mapsto": "↦",
    "ll": "≪", "gg": "≫", "ell": "ℓ", "hbar": "ℏ", "circ": "∘", "star": "⋆", "ast": "∗",
    "div": "÷", "sqrt": "√", "langle": "⟨", "rangle": "⟩", "log": "log", "exp": "exp",
    "sin": "sin", "cos": "cos", "max": "max", "min": "min", "arg": "arg", "lim": "lim",
    "quad": " ", "qquad": " ", "prime": "′", "top": "⊤", "perp": "⊥", "dagger": "†",
    "checkmark": "✓", "neg": "¬", "land": "∧", "lor": "∨", "oplus": "⊕", "otimes": "⊗",
    "uparrow": "↑", "downarrow": "↓", "colon": ":", "ln": "ln", "mid": "|", "vert": "|",
    "left": "", "right": "", "big": "", "Big": "", "bigl": "", "bigr": "", "Bigl": "",
    "Bigr": "", "displaystyle": "", "limits": "", "degree": "°", "textdegree": "°",
}
# fmt: on
# What a superscript of these reads as: V^* -> V*, 90^\circ -> 90°.
_SCRIPT_WORDS = {
    "*": "*",
    "\\ast": "*",
    "\\star": "*",
    "\\circ": "°",
    "\\prime": "′",
    "\\top": "ᵀ",
    "\\dagger": "†",
}  # fmt: skip
_SUPERSCRIPT = dict(zip("0123456789+-=()niT", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱᵀ", strict=True))
_SUBSCRIPT = dict(zip("0123456789+-=()aeoxijklmnpst", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₒₓᵢⱼₖₗₘₙₚₛₜ", strict=True))
_BLACKBOARD = {"R": "ℝ", "N": "ℕ", "Z": "ℤ", "Q": "ℚ", "C": "ℂ", "E": "𝔼", "P": "ℙ"}

# $...$ (not "$5 and $10": math starts and ends next to a non-space, and no digit follows)
_MATH = re.compile(r"\$\$(.+?)\$\$|\$(?=\S)(.+?)(?<=\S)\$(?!\d)|\\\((.+?)\\\)", re.S)
_STYLE_CMD = re.compile(
    r"\\(?:mathrm|mathbf|mathit|mathsf|mathtt|boldsymbol|bm|text|textrm|textbf|textit|texttt"
    r"|emph|operatorname|mathcal|mathscr|mathfrak|widehat|hat|tilde|widetilde|bar|overline"
    r"|vec|dot|ddot)\s*\{([^{}]*)\}"
)
_BB = re.compile(r"\\mathbb\s*(?:\{\s*([A-Za-z])\s*\}|([A-Za-z]))")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_SQRT = re.compile(r"\\sqrt\s*\{([^{}]*)\}")
_SCRIPT = re.compile(r"([\^_])\s*(?:\{([^{}]*)\}|(\\[A-Za-z]+|[A-Za-z0-9*]))")
_COMMAND = re.compile(r"\\([A-Za-z]+)")
_UNICODE = re.compile(r"\\unicode\s*\{\s*x?([0-9A-Fa-f]{2,6})\s*\}")
_ESCAPED = re.compile(r"\\([%&_#${}])")


def _script(match: re.Match[str]) -> str:
    kind, body = match.group(1), match.group(2) if match.group(2) is not None else match.group(3)
    body = body.strip()
    if kind == "^" and body in _SCRIPT_WORDS:
        return _SCRIPT_WORDS[body]
    table = _SUPERSCRIPT if kind == "^" else _SUBSCRIPT
    if body and all(c in table for c in body):
        return "".join(table[c] for c in body)
    if len(body) == 1 or body.startswith("\\"):
        return kind + body
    return f"{kind}({body})"


def _blackboard(m: re.Match[str]) -> str:
    letter = m.group(1) or m.group(2)
    return _BLACKBOARD.get(letter, letter)


def _math(body: str) -> str:
    text = _UNICODE.sub(lambda m: chr(int(m.group(1), 16)), body)
    text = _BB.sub(_blackboard, text)
    for _ in range(3):  # nested groups such as \frac{\mathbf{x}}{T^{1/3}}
        text = _STYLE_CMD.sub(r"\1", text)
        text = _SCRIPT.sub(_script, text)
        text = _FRAC.sub(r"\1/\2", text)
        text = _SQRT.sub(r"√\1", text)
    text = _COMMAND.sub(lambda m: _SYMBOLS.get(m.group(1), m.group(1)), text)
    text = _SCRIPT.sub(_script, text)
    text = _ESCAPED.sub(r"\1", text)
    text = text.replace("{", "").replace("}", "").replace("\\,", " ").replace("\\;", " ")
    text = text.replace("\\!", "").replace("~", " ").replace("\\", "")
    return text.strip()


def latex_to_text(text: str | None) -> str:
    """Readable Unicode for the simple LaTeX found in titles and abstracts.

    ``$\\alpha$-stable`` -> ``α-stable``, ``$O(n^2)$`` -> ``O(n²)``, ``$\\mathbb{R}^d$`` -> ``ℝ^d``.
    Text outside math only loses escapes (``\\%`` -> ``%``) and simple style commands.
    Anything it does not know is left readable rather than dropped.
    """
    if not text:
        return ""
    if "$" not in text and "\\" not in text:
        return text

    def repl(m: re.Match[str]) -> str:
        return _math(next(g for g in m.groups() if g is not None))

    out = _MATH.sub(repl, text)
    if "\\" in out:
        out = _STYLE_CMD.sub(r"\1", out)
        out = _ESCAPED.sub(r"\1", out)
        out = re.sub(r"\\(?:textendash)\b\s?", "–", out)
        out = re.sub(r"\\(?:textemdash)\b\s?", "—", out)
        out = _COMMAND.sub(
            lambda m: _SYMBOLS.get(m.group(1), m.group(0)),
            out,
        )
    return out


# ---------------------------------------------------------------- links

# Characters libxml2's HTML serializer leaves alone in href attributes; anything else we
# percent-encode first, so the link is the same whichever way the HTML is produced.
_UNSAFE_IN_URL = re.compile(r'[\s\x00-\x1f\x7f-\x9f"<>\\\u2028\u2029\u202a-\u202e\u2066-\u2069]')
_URL_SAFE = "-_.!~*'()@/:=?;#%&,+$[]"
_URL_OK = re.compile(r"[A-Za-z0-9\-_.!~*'()@/:=?;#%&,+$\[\]]*")


def safe_url(url: str | None, *, allow_mailto: bool = False) -> str:
    """The URL if it is an absolute http(s) link (or mailto: when allowed), else ``""``.

    Control characters and whitespace inside make it unsafe; non-ASCII is percent-encoded.
    """
    if not url:
        return ""
    url = url.strip()
    if not url or _UNSAFE_IN_URL.search(url):
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.netloc or parts.netloc.startswith("@"):
            return ""
    elif not (allow_mailto and scheme == "mailto" and "@" in parts.path):
        return ""
    return url if _URL_OK.fullmatch(url) else quote(url, safe=_URL_SAFE)


# ---------------------------------------------------------------- trimming


def shorten(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, with an ellipsis."""
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-–—(") + "…"


def short_authors(authors: tuple[str, ...] | list[str], shown: int = 3) -> str:
    """``"A, B, C … +5"``: the first ``shown`` names and how many more."""
    names = [n for n in (one_line(a) for a in authors) if n]
    if len(names) <= shown + 1:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} … +{len(names) - shown}"


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


# ---------------------------------------------------------------- wrapping

WIDTH = 78
_BULLET = re.compile(r"^(\s*)([*\-•]|\d+\.)\s")


def wrap_line(line: str, width: int = WIDTH) -> str:
    """One line wrapped at ``width`` columns; indentation (and a bullet's hang) is kept.

    Words longer than the width (links) are never broken.
    """
    if len(line) <= width:
        return line
    indent = len(line) - len(line.lstrip(" "))
    m = _BULLET.match(line)
    hang = " " * (m.end() if m else indent)
    lines = textwrap.wrap(
        line,
        width=width,
        subsequent_indent=hang,
        break_long_words=False,
        break_on_hyphens=False,
        drop_whitespace=True,
    )
    if len(lines) > 1 and len(lines[0]) <= len(hang):  # a bullet alone: keep its first word
        lines[:2] = [lines[0].rstrip() + " " + lines[1].lstrip()]
    return "\n".join(lines) if lines else line.rstrip()


class Wrapper:
    """Finishes a plain-text part: each line wrapped, blank-line runs squeezed, one final newline.

    Only :meth:`line` looks at a single line, so any text can be finished piece by piece
    (lines wholly inside a piece ahead of time) and come out the same. The long lines of a
    digest (abstracts) repeat across subscribers, so wrapped lines are remembered.
    """

    def __init__(self, limit: int = 50_000) -> None:
        self.limit = limit
        self._memo: dict[str, str] = {}

    def line(self, line: str) -> str:
        """One line without trailing spaces, wrapped at 78 columns when longer."""
        line = line.rstrip()
        if len(line) <= WIDTH:
            return line
        done = self._memo.get(line)
        if done is None:
            if len(self._memo) >= self.limit:
                self._memo.clear()
            done = self._memo[line] = wrap_line(line, WIDTH)
        return done

    def lines(self, text: str) -> str:
        """:meth:`line` applied to every line of ``text``."""
        return "\n".join([self.line(x) for x in text.split("\n")])

    def __call__(self, text: str) -> str:
        return squeeze(self.lines(text))


def squeeze(text: str) -> str:
    """Runs of blank lines squeezed to one; no blank lines at either end; a final newline."""
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip("\n") + "\n"
