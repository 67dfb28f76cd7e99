"""Simple LaTeX made readable in titles, abstracts and author names.

Accents (``\\'e`` -> é, ``{\\l}`` -> ł, ``\\v{z}`` -> ž), inline math (``$\\alpha^2$`` -> α²,
``$20\\%$`` -> 20%, ``$\\frac{a}{b}$`` -> a/b), font commands (``\\textit{x}`` -> x) and
``\\href{url}{text}``. Anything not understood is left as it is: this is for reading,
not typesetting.
"""

from __future__ import annotations

import re
import unicodedata

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
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε",
    "zeta": "ζ", "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ",
    "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ",
    "tau": "τ", "upsilon": "υ", "phi": "φ", "varphi": "φ", "chi": "χ", "psi": "ψ",
    "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ",
    "Pi": "Π", "Sigma": "Σ", "Upsilon": "Υ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
    "times": "×", "cdot": "·", "pm": "±", "mp": "∓", "leq": "≤", "le": "≤", "geq": "≥",
    "ge": "≥", "neq": "≠", "ne": "≠", "approx": "≈", "sim": "~", "simeq": "≃", "equiv": "≡",
    "lesssim": "≲", "gtrsim": "≳", "ll": "≪", "gg": "≫", "propto": "∝", "infty": "∞",
    "partial": "∂", "nabla": "∇", "sum": "∑", "prod": "∏", "int": "∫", "sqrt": "√",
    "to": "→", "rightarrow": "→", "leftarrow": "←", "Rightarrow": "⇒", "Leftrightarrow": "⇔",
    "leftrightarrow": "↔", "mapsto": "↦", "in": "∈", "notin": "∉", "subset": "⊂",
    "subseteq": "⊆", "cup": "∪", "cap": "∩", "forall": "∀", "exists": "∃", "ell": "ℓ",
    "hbar": "ℏ", "circ": "∘", "degree": "°", "dagger": "†", "ldots": "…", "cdots": "⋯",
    "dots": "…", "langle": "⟨", "rangle": "⟩", "mid": "|", "prime": "′", "star": "⋆",
    "textbackslash": "\\", "textasciitilde": "~", "textendash": "–", "textemdash": "—",
    "%": "%", "&": "&", "_": "_", "#": "#", "$": "$", "{": "{", "}": "}",
    ",": " ", ";": " ", ":": " ", "!": "", " ": " ", "quad": " ", "qquad": " ",
    "left": "", "right": "", "big": "", "Big": "", "bigl": "", "bigr": "", "displaystyle": "",
}
_SUPER = dict(zip("0123456789+-=()ni", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱ", strict=True))
_SUB = dict(zip("0123456789+-=()", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎", strict=True))
# fmt: on

_WRAPPERS = (
    "textbf|textit|emph|texttt|textrm|textsf|textsc|textup|textnormal|text|mathrm|mathbf|"
    "mathit|mathsf|mathtt|mathcal|mathbb|mathfrak|mathscr|boldsymbol|bm|operatorname|mbox|"
    "hbox|url|underline|overline|hat|tilde|bar|vec|widehat|widetilde|textsuperscript"
)
_ACCENT_RE = re.compile(
    r"\{?\\([`'^\"~=.]|[uvHckrdb](?![a-zA-Z]))\s*"
    r"(?:\{\s*(\\[ij]|[A-Za-z])\s*\}|(\\[ij](?![a-zA-Z])|[A-Za-z]))\}?"
)
_LETTER_RE = re.compile(
    r"\{\\(ss|ae|AE|oe|OE|aa|AA|dh|DH|th|TH|ng|NG|[lLoOij])\}"
    r"|\\(ss|ae|AE|oe|OE|aa|AA|[lLoO])(?![a-zA-Z])\s?"
)
_HREF_RE = re.compile(r"\\href\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_WRAP_RE = re.compile(rf"\\(?:{_WRAPPERS})\s*\{{([^{{}}]*)\}}")
_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_SQRT_RE = re.compile(r"\\sqrt\s*\{([^{}]*)\}")
_SPACING_RE = re.compile(
    r"\\[mh]?kern\s*-?[\d.]+\s*(?:mu|em|ex|pt)\s*|\\[mh]?skip\s*-?[\d.]+\w*\s*"
)
_SCRIPT_RE = re.compile(r"([\^_])(?:\{([^{}]*)\}|(\\?[A-Za-z0-9+\-]))")
_SYMBOL_RE = re.compile(r"\\([A-Za-z]+|[%&_#${},;:! ])")
_MATH_RE = re.compile(r"\$\$?(?=\S)([^$\n]{1,200}?)(?<=\S)\$\$?")
_TIE_RE = re.compile(r"(?<=\S)~(?=\S)")


def latex_text(text: str) -> str:
    """``text`` with simple LaTeX turned into Unicode; unknown commands are kept."""
    if not text or ("\\" not in text and "$" not in text and "~" not in text):
        return text
    text = _ACCENT_RE.sub(_accent, text)
    text = _LETTER_RE.sub(lambda m: _LETTERS[m.group(1) or m.group(2)], text)
    text = _HREF_RE.sub(_href, text)
    text = _MATH_RE.sub(_math, text)
    text = _TIE_RE.sub(" ", text)
    if "\\" in text:
        text = _SPACING_RE.sub("", text)
        text = _symbols(text, in_math=False)
    return text


def _accent(m: re.Match[str]) -> str:
    mark, letter = m.group(1), m.group(2) or m.group(3)
    base = {"\\i": "i", "\\j": "j"}.get(letter, letter)
    return unicodedata.normalize("NFC", base + _ACCENTS[mark])


def _href(m: re.Match[str]) -> str:
    url, label = m.group(1).strip(), m.group(2).strip()
    return url if not label or label == url or "://" in label else f"{label} ({url})"


def _math(m: re.Match[str]) -> str:
    body = _SPACING_RE.sub("", m.group(1))
    body = _symbols(body, in_math=True)
    body = _SCRIPT_RE.sub(_script, body)
    body = body.replace("{", "").replace("}", "")
    return re.sub(r"(?<=\S) {2,}(?=\S)", " ", body)


def _script(m: re.Match[str]) -> str:
    kind, body = m.group(1), m.group(2) if m.group(2) is not None else m.group(3)
    table = _SUPER if kind == "^" else _SUB
    if body and all(ch in table for ch in body):
        return "".join(table[ch] for ch in body)
    return kind + (body if len(body) == 1 else f"{{{body}}}" if body else "")


def _symbols(text: str, *, in_math: bool) -> str:
    for _ in range(3):  # nested wrappers: \mathcal{\mathbf{x}}
        new = _WRAP_RE.sub(lambda m: m.group(1), text)
        new = _FRAC_RE.sub(_frac, new)
        new = _SQRT_RE.sub(lambda m: "√" + _group(m.group(1)), new)
        if new == text:
            break
        text = new

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in _SYMBOLS:
            out = _SYMBOLS[name]
        elif in_math:
            out = name  # an operator name: \ln -> ln (inside math only)
        else:
            return m.group(0)
        if len(out) > 1 and out.isalpha():  # keep operator names apart: \ln\ln T -> ln ln T
            nxt = m.string[m.end() : m.end() + 1]
            prev = m.string[m.start() - 1 : m.start()]
            out = (" " if prev.isalnum() else "") + out
            out += " " if nxt.isalnum() or nxt == "\\" else ""
        return out

    return _SYMBOL_RE.sub(repl, text)


def _frac(m: re.Match[str]) -> str:
    return f"{_group(m.group(1))}/{_group(m.group(2))}"


def _group(text: str) -> str:
    text = text.strip()
    return f"({text})" if re.search(r"[\s+\-*/=,]", text) else text
