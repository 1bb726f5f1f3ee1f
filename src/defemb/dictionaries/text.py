"""Cleaning shared by the dictionary readers: definition text and part-of-speech names.

Definitions end up inside training prompts, so dictionary bookkeeping (markup, source attributions such
as "[1913 Webster]", etymologies, editor comments) is removed, while brackets that belong to the meaning
("(Pb[CH3CO]2)", "([ or ])") are kept: only brackets matching known note patterns are dropped.
"""

from __future__ import annotations

import html
import re

# GCIDE source attributions, alone or joined by "+": "[1913 Webster]", "[Webster 1913 Suppl. +PJC]",
# "[WordNet 1.5 + CM]". Short codes (AS, RH, CM) only count inside brackets or after a "+".
_STRONG = (
    r"(?:1913\s+Webster|Webster\s+1913(?:\s+Suppl\.)?|PJC|WordNet\s+\d\.\d"
    r"|Century\s+Dict(?:ionary)?\.?\s+\d{4})"
)
_FOLLOW = rf"(?:\s*\+\s*(?:{_STRONG}|[A-Za-z]{{1,6}}\d*))*"
# (pattern, replacement): removed markup that separated words leaves a space, inline marks nothing.
_PATTERNS = [
    (re.compile(r"<!--.*?-->|<--.*?-->", re.S), " "),  # HTML and GCIDE editor comments
    (re.compile(r"</?[A-Za-z][^<>]*>"), " "),  # tags; a lone "<" in "x < y" is kept
    (re.compile(rf"\[\s*(?:{_STRONG}|WordNet|wn\d|AS|RH|MW\d*|NetMW|DD|JW|BVT){_FOLLOW}\s*\]"), " "),
    # The package's conversion lost text before some non-ASCII characters, sometimes eating the "[" of
    # an attribution ("...of the larv1913 Webster]", "To she1913 Webster]d an old covering").
    (re.compile(rf"{_STRONG}{_FOLLOW}\s*\]"), " "),
    (
        re.compile(
            r"\[\s*(?:Etym(?:ol)?\b|(?:L|F|OF|OE|AS|Gr|NL|LL|It|Sp|Pg|G|D|Icel|Ar|Heb|Skr|Cf|Perh|Prob|Fr)\.)"
            r"[^\[\]]*\]"
        ),
        " ",
    ),  # etymologies: "[Etym: ...]", "[L. ...]", "[Cf. F. ...]"
    (re.compile(r"\{\d+[a-z]?\}"), ""),  # GCIDE sense cross-references: "abortion{2}", "bittersweet{3b}"
]
# Usage labels carry meaning, so they are spelled out rather than dropped.
_LABELS = {
    "obs.": "obsolete",
    "r.": "rare",
    "colloq.": "colloquial",
    "archaic": "archaic",
    "slang": "slang",
    "prov. eng.": "provincial English",
    "u. s.": "US",
    "u.s.": "US",
}
_LABEL = re.compile(r"\[\s*(" + "|".join(re.escape(k) for k in _LABELS) + r")\s*\]", re.I)


_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")


def collapse(text: str) -> str:
    """Collapse all whitespace runs (newlines included) to single spaces."""
    return " ".join(text.split())


def clean_definition(text: str) -> str:
    """Dictionary text to a plain one-line definition ("" when nothing is left)."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    text = _LABEL.sub(lambda m: f"({_LABELS[m.group(1).lower()]})", text)
    # Unescape after removing tags so that an escaped "&lt;b&gt;" stays literal text; a removed tag or
    # note must not leave a space before the punctuation that followed it ("<i>feline</i>.").
    return _SPACE_BEFORE_PUNCT.sub(r"\1", collapse(html.unescape(text)))


_NOUN, _PROPER, _VERB, _ADJ, _ADV = "noun", "proper noun", "verb", "adjective", "adverb"
# Keys are abbreviations with dots and spaces removed ("v. t." -> "vt"), covering GCIDE's abbreviations
# (with its typos) and wiktextract's short names. Verb inflection labels ("imp.", "p. p.",
# "3d pers. sing. pres.") are verb forms and map to "verb".
_POS = {
    **dict.fromkeys(["n", "nn", "npl", "nsing", "nmasc", "nm", "nfem", "nf", "ncollect", "femn", "pl"], _NOUN),
    **dict.fromkeys(["vbn", "noun"], _NOUN),
    **dict.fromkeys(["propn", "prn", "peopn", "propnpl", "prnpl", "proppropn", "propnsing", "name"], _PROPER),
    **dict.fromkeys(["a", "adj", "adjprenom", "adjpren", "predadj", "preda", "postnominaladj"], _ADJ),
    **dict.fromkeys(["propa", "propadj", "asuperl", "acompar", "compar", "superl", "amasc", "afem"], _ADJ),
    **dict.fromkeys(["am", "masca", "pa", "pra", "adjective"], _ADJ),
    **dict.fromkeys(["v", "vt", "vi", "t", "i", "vimpers", "vinf", "vn", "propvt", "propvi", "verb"], _VERB),
    **dict.fromkeys(["vimperative", "vimpersonal", "imp", "impsing", "imppl", "pp", "ppr", "pret"], _VERB),
    **dict.fromkeys(["pres", "inf", "imperative", "imperativesing", "auxiliary", "vb"], _VERB),
    **dict.fromkeys(["adv", "ads", "interrogadv", "adverb"], _ADV),
    **dict.fromkeys(["prep", "preposition"], "preposition"),
    **dict.fromkeys(["prepphr", "prepphrase"], "prepositional phrase"),
    **dict.fromkeys(["advphrase"], "adverbial phrase"),
    **dict.fromkeys(["conj", "conjunction"], "conjunction"),
    **dict.fromkeys(["pron", "posspron", "possessivepron", "indefpron", "perspron", "pronpl"], "pronoun"),
    **dict.fromkeys(["pronoun"], "pronoun"),
    **dict.fromkeys(["interj", "intj", "exclamation", "interjection"], "interjection"),
    **dict.fromkeys(["suff", "suffix"], "suffix"),
    **dict.fromkeys(["pref", "prefix"], "prefix"),
    **dict.fromkeys(["phr", "phrase"], "phrase"),
    **dict.fromkeys(["defart", "definitearticle", "article", "art"], "article"),
    **dict.fromkeys(["contrac", "contraction"], "contraction"),
    **dict.fromkeys(["num", "numeral"], "numeral"),
    **dict.fromkeys(["det", "determiner"], "determiner"),
    **dict.fromkeys(["abbrev", "abbreviation"], "abbreviation"),
    **dict.fromkeys(["punct", "punctuation"], "punctuation mark"),
    **dict.fromkeys(["postp"], "postposition"),
}
# Inflection labels the table cannot list one by one: "3d pers. sing. pres.", "obs. imp. pl.".
_VERB_FORM = re.compile(r"^(?:\d|obs|strong|archaic|rare|subj)|pers|pres|impsing|indic")
_ALTERNATIVES = re.compile(r"&|,|;|\bor\b|\band\b|\balso\b|\bbut\b")


def _plain_part(part: str, abbreviated: bool) -> str | None:
    key = re.sub(r"[^a-z0-9]", "", part.lower())
    if key in _POS:
        return _POS[key]
    if key and _VERB_FORM.search(key):
        return _VERB
    # An unknown plain label ("particle", "proverb") is already readable; leftovers of an abbreviated
    # one ("but sing. or pl. in usage") are not.
    if key and not abbreviated and len(key) <= 30:
        return collapse(part.lower().replace("_", " "))
    return None


def plain_pos(raw: str) -> str:
    """Dictionary part-of-speech label -> plain words: "v. t." -> "verb", "a. & n." -> "adjective and
    noun", "adj" -> "adjective", "" when nothing readable is left."""
    # Some GCIDE labels run on into the entry text ("v. t.  [L. ...] To make ..."): keep the label only.
    head = re.split(r"\[|\n|\s{2,}", raw.strip(), maxsplit=1)[0]
    names: list[str] = []
    for part in _ALTERNATIVES.split(head):
        name = _plain_part(part, abbreviated="." in head)
        if name and name not in names:
            names.append(name)
    return " and ".join(names)
