"""Item text: cleaning raw field values and rendering them through a template."""

import html
import re
import string

from .issues import ConversionError

# markup is stripped only where it is HTML: real tag names (a cut-off opening tag at the end
# of a field too); "<1/3> Godzilla" or "Smash < Boxer 3>" keep their angle brackets
_TAG_NAMES = (r"a|abbr|b|big|blockquote|br|center|code|dd|div|dl|dt|em|font|h[1-6]|hr|i|img|li|ol|p|pre|"
              r"s|small|span|strike|strong|sub|sup|table|tbody|td|tfoot|th|thead|tr|tt|u|ul")
_TAG = re.compile(rf"</?(?:{_TAG_NAMES})(?:\s[^<>]{{0,1000}})?/?>", re.IGNORECASE)
_CUT_TAG = re.compile(rf"</?(?:{_TAG_NAMES})(?:\s[^<>]*)?$", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_LEAD = " .,;:-|/"


def clean_text(value, list_sep=" "):
    """One line of plain text from a raw field: lists flattened (joined by ``list_sep``),
    dicts as ``key: value`` pairs, HTML tags (a cut-off one at the end too) and entities
    removed, whitespace collapsed."""
    if value is None:
        return ""
    if isinstance(value, dict):
        value = [f"{k}: {clean_text(v, ', ')}" for k, v in value.items() if clean_text(v)]
        list_sep = "; "
    if isinstance(value, (list, tuple)):
        parts = (clean_text(v, list_sep) for v in value)
        return list_sep.join(p for p in parts if p)
    text = html.unescape(_CUT_TAG.sub(" ", _TAG.sub(" ", str(value))))
    return _SPACE.sub(" ", text).strip()


def only_markup(value):
    """Whether a raw field value has text before cleaning but none after (all markup)."""
    return isinstance(value, str) and bool(value.strip()) and not clean_text(value)


class TextTemplate:
    """A template such as ``"{title}. {brand}. {description}"``.

    Each placeholder owns the literal text before it (its separator); an empty field is
    left out together with its separator, and when the first field is empty the next
    kept one loses the leading punctuation of its separator. Literal text after the
    last placeholder is kept when any field is present. All fields empty gives ``None``.
    """

    def __init__(self, template):
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as err:
            raise ConversionError(f"text template {template!r}: {err}") from None
        self.template = template
        self.segments, self.tail = [], ""
        for literal, field, spec, conversion in parsed:
            if field is None:
                self.tail = literal
                continue
            if not field.isidentifier() or spec or conversion:
                raise ConversionError(f"text template {template!r}: placeholder {{{field}}} "
                                      f"must be a plain field name")
            self.segments.append((literal, field))
        if not self.segments:
            raise ConversionError(f"text template {template!r} names no field, like {{title}}")
        self.fields = [field for _, field in self.segments]
        self.seen = set()

    @classmethod
    def from_fields(cls, fields):
        """The template joining ``fields`` with ``". "``."""
        return cls(". ".join("{" + f + "}" for f in fields))

    def render(self, values):
        """The text for one item from ``{field: cleaned text}``; records which fields occurred."""
        out = None
        for i, (literal, field) in enumerate(self.segments):
            value = values.get(field) or ""
            if not value:
                continue
            self.seen.add(field)
            if out is None:
                out = literal if i == 0 else literal.lstrip(_LEAD)
            else:
                out = _join(out, literal)
            out += value
        if out is None:
            return None
        return _join(out, self.tail).strip() or None

    def unseen_fields(self):
        """Fields of the template that no item had (a typo, or a field the source lacks)."""
        return [f for f in self.fields if f not in self.seen]


def _join(text, literal):
    """``text + literal`` without doubling a full stop (``"Title." + ". "``)."""
    if literal.startswith(".") and text.endswith((".", "!", "?")):
        literal = literal[1:]
    return text + literal
