"""A witness's words -> the attributes they describe (docs/METHODS.md#search-by-description).

``parse_description("woman, red top, backpack, no hat", names)`` returns the described attributes of
the vocabulary ``names`` (an index's or a head's attribute names), each with whether it is wanted
(present) or not, and everything it could not use, said back to the user: words that matched
nothing, attributes this vocabulary lacks, contradictions (both removed from the description) and
typo corrections. Pure: no I/O.

How words are read:

- Phrases from a fixed table (``PHRASES``): the reports' own words (``xreid.data.vocabulary``) and
  common synonyms ("lady", "rucksack", "coat", "trainers"). Each phrase lists alternatives, the
  first one in the vocabulary wins ("woman" is ``personalFemale`` where the vocabulary has it, else
  "not ``personalMale``", else Market-1501's ``female``). The longest phrase at a position wins.
- Colours need a body part: "red top", "blue jeans", "black hair"; a garment that is an attribute
  of its own adds it ("blue jeans" = blue lower body + jeans; "red top" = red upper body only),
  except the plain words "trousers" and "shoes" ("black shoes" = black footwear only). A
  colour with no part in its clause is said back ("red: of what?").
- Negation: "no", "not", "without", "doesn't" ... negate every attribute after them up to the end
  of the clause (a comma, ";", ".", "and", "but", "with"); "or" / "nor" keep it ("no hat or
  scarf"). Phrases that contain a negation are phrases of their own ("no accessories",
  "not carrying anything").
- Typos: a word that matches nothing is replaced by the only table word one edit away (two
  neighbouring letters swapped; for 4 letters or more also one letter changed, added or dropped),
  else, for 4 letters or more, by the closest table word (``difflib``, ratio >= ``TYPO_CUTOFF``);
  the correction is reported.
- Filler words ("a", "wearing", "carrying", "person") are skipped; cameras and times are filters
  and are said back as such.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from xreid.data.vocabulary import words

#: difflib ratio a misspelt word needs to be read as a vocabulary word
TYPO_CUTOFF = 0.8

# one alternative: (attribute name, wanted)
Alt = tuple[str, bool]

_COLOURS = {  # word -> canonical colour (as in the attribute names, lower case)
    "black": "black", "blue": "blue", "brown": "brown", "green": "green", "grey": "grey", "gray": "grey",
    "orange": "orange", "pink": "pink", "purple": "purple", "red": "red", "white": "white", "yellow": "yellow",
    "navy": "blue", "beige": "brown", "tan": "brown", "khaki": "brown", "maroon": "red",
    "burgundy": "red", "crimson": "red", "violet": "purple", "lilac": "purple", "blonde": "yellow", "blond": "yellow",
    "golden": "yellow", "gold": "yellow", "silver": "grey", "cream": "white",
}

# body parts a colour can belong to, with the attribute name prefixes of PETA and Market-1501
_PART_PREFIXES = {"top": ("upperBody", "up"), "lower": ("lowerBody", "down"), "hair": ("hair",),
                  "shoes": ("footwear",)}
_PART_WORDS = {"top": "top", "lower": "trousers", "hair": "hair", "shoes": "shoes"}


def _alts(*pairs: str) -> tuple[Alt, ...]:
    """``"personalFemale"`` -> wanted, ``"!personalMale"`` -> not wanted."""
    return tuple((p.lstrip("!"), not p.startswith("!")) for p in pairs)


# phrase -> (body part it names or None, alternatives of the attribute it states or ())
_GARMENTS: dict[str, tuple[str, tuple[Alt, ...]]] = {}
for _part, _names, _alt in [
    ("top", "top|shirt|blouse|upper body|polo|polo shirt|clothes|outfit", ()),
    ("top", "jacket|coat|anorak|parka|raincoat|windbreaker", _alts("upperBodyJacket")),
    ("top", "t shirt|tshirt|tee|tee shirt", _alts("upperBodyTshirt")),
    ("top", "sweater|jumper|pullover|sweatshirt|hoodie|cardigan|fleece", _alts("upperBodySweater")),
    ("top", "suit|suit jacket|blazer", _alts("upperBodySuit")),
    ("top", "vest|tank top|sleeveless top", _alts("upperBodyNoSleeve")),
    ("top", "casual top|casual shirt", _alts("upperBodyCasual")),
    ("top", "formal top|formal shirt|dress shirt", _alts("upperBodyFormal")),
    ("top", "plaid top|plaid shirt|checked shirt|check shirt|tartan shirt|checked top", _alts("upperBodyPlaid")),
    ("top", "striped top|striped shirt|thin striped top", _alts("upperBodyThinStripes")),
    ("top", "thick striped top", _alts("upperBodyThickStripes")),
    ("top", "other top", _alts("upperBodyOther")),
    ("lower", "trousers|pants|slacks|long trousers|long pants", _alts("lowerBodyTrousers", "!dress")),
    ("lower", "lower body|bottoms|legs", ()),
    ("lower", "jeans|jean|denim|denims", _alts("lowerBodyJeans")),
    ("lower", "shorts|short trousers|short pants", _alts("lowerBodyShorts", "shortLowerBody")),
    ("lower", "skirt|short skirt|miniskirt|mini skirt", _alts("lowerBodyShortSkirt", "shortLowerBody")),
    ("lower", "long skirt|dress|gown", _alts("lowerBodyLongSkirt", "dress")),
    ("lower", "capri trousers|capris|capri pants|cropped trousers", _alts("lowerBodyCapri")),
    ("lower", "hot pants|hotpants", _alts("lowerBodyHotPants")),
    ("lower", "suit trousers|suit pants", _alts("lowerBodySuits")),
    ("lower", "casual trousers|casual pants", _alts("lowerBodyCasual")),
    ("lower", "formal trousers|formal pants", _alts("lowerBodyFormal")),
    ("lower", "plaid trousers|plaid skirt|checked trousers", _alts("lowerBodyPlaid")),
    ("lower", "striped trousers|striped skirt", _alts("lowerBodyThinStripes")),
    ("shoes", "shoes|shoe|ordinary shoes", _alts("footwearShoes")),
    ("shoes", "footwear", ()),
    ("shoes", "leather shoes|leather shoe|dress shoes|formal shoes", _alts("footwearLeatherShoes")),
    ("shoes", "sandals|sandal|flip flops|flipflops", _alts("footwearSandals")),
    ("shoes", "sneakers|sneaker|trainers|trainer|running shoes|sports shoes|sport shoes|tennis shoes",
     _alts("footwearSneakers")),
    ("shoes", "boots|boot", _alts("footwearBoots")),
    ("shoes", "stockings|tights", _alts("footwearStocking")),
    ("hair", "hair", ()),
    ("hair", "long hair|ponytail|pony tail", _alts("hairLong", "longHair")),
    ("hair", "short hair", _alts("hairShort", "!hairLong", "!longHair")),
]:
    for _phrase in _names.split("|"):
        _GARMENTS[_phrase] = (_part, _alt)

#: the plain word for a part's garment: with a colour it names the colour only ("black shoes" is
#: black footwear, not the attribute "shoes" as against sneakers or boots)
_GENERIC = {"trousers", "pants", "slacks", "shoes", "shoe"}

# phrase -> alternatives (attributes with no body part a colour could belong to)
_ATTRIBUTES: dict[str, tuple[Alt, ...]] = {}
for _phrases, _alt in [
    ("woman|women|lady|ladies|female|girl|girls", _alts("personalFemale", "!personalMale", "female")),
    ("man|men|male|guy|gentleman|boy|boys|bloke", _alts("personalMale", "!personalFemale", "!female")),
    ("child|kid|age under 15|under 15", _alts("personalLess15", "ageYoung")),
    ("young|teenager|teen|youth|age 15 30|aged 15 30", _alts("personalLess30", "ageTeenager")),
    ("age 30 45|aged 30 45|middle aged", _alts("personalLess45")),
    ("age 45 60|aged 45 60", _alts("personalLess60")),
    ("elderly|old|senior|pensioner|age over 60|over 60", _alts("personalLarger60", "ageOld")),
    ("adult|grown up", _alts("ageAdult", "!personalLess15")),
    ("bald|bald head|shaved head", _alts("hairBald")),
    ("backpack|rucksack|knapsack|back pack|schoolbag|school bag", _alts("carryingBackpack", "backpack")),
    ("shoulder bag|messenger bag|bag|satchel", _alts("carryingMessengerBag", "bag")),
    ("handbag|purse|hand bag", _alts("handbag", "carryingMessengerBag")),
    ("plastic bag|plastic bags|shopping bag|shopping bags|carrier bag", _alts("carryingPlasticBags")),
    ("carrying nothing|nothing in hand|empty handed|not carrying anything|carrying no bags",
     _alts("carryingNothing")),
    ("carrying something|carrying something else|carrying an object|holding something",
     _alts("carryingOther")),
    ("baby buggy|buggy|pram|stroller|pushchair", _alts("carryingBabyBuggy")),
    ("shopping trolley|trolley|shopping cart|cart", _alts("carryingShoppingTro")),
    ("umbrella", _alts("carryingUmbrella")),
    ("folder|file|papers|documents", _alts("carryingFolder")),
    ("luggage case|luggage|trolley case", _alts("carryingLuggageCase")),
    ("suitcase|suit case", _alts("carryingSuitcase")),
    ("logo|logo on top|print on top|printed top", _alts("upperBodyLogo")),
    ("plaid|checked|tartan", _alts("upperBodyPlaid")),
    ("thin stripes|stripes|striped|pinstripes", _alts("upperBodyThinStripes")),
    ("thick stripes", _alts("upperBodyThickStripes")),
    ("short sleeves|short sleeved|short sleeve", _alts("upperBodyShortSleeve", "shortSleeve")),
    ("long sleeves|long sleeved|long sleeve", _alts("upperBodyLongSleeve", "!upperBodyShortSleeve", "!shortSleeve")),
    ("sleeveless|no sleeves", _alts("upperBodyNoSleeve")),
    ("v neck|vneck", _alts("upperBodyVNeck")),
    ("casual|casually dressed", _alts("upperBodyCasual")),
    ("formal|formally dressed|smart", _alts("upperBodyFormal")),
    ("hat|cap|beanie|baseball cap|helmet", _alts("accessoryHat", "hat")),
    ("scarf|muffler", _alts("accessoryMuffler")),
    ("sunglasses|shades|sun glasses", _alts("accessorySunglasses")),
    ("headphones|headphone|earphones|headset|earbuds", _alts("accessoryHeadphone")),
    ("hair band|headband|hairband|head band", _alts("accessoryHairBand")),
    ("kerchief|headscarf|head scarf|bandana|headkerchief", _alts("accessoryKerchief")),
    ("no accessories|no accessory|without accessories", _alts("accessoryNothing")),
    # understood, but no vocabulary has them: said back as unavailable, never read as a near word
    ("glasses|spectacles|beard|moustache|mustache|mask|face mask|gloves|tie|watch|phone|mobile phone|jewellery",
     ()),
]:
    for _phrase in _phrases.split("|"):
        _ATTRIBUTES[_phrase] = _alt

_NEGATIONS = {"no", "not", "without", "never", "neither", "nor", "none", "doesnt", "dont", "didnt", "isnt",
              "wasnt", "hasnt", "havent", "arent", "werent", "lacks", "lacking", "cannot"}
_KEEP_NEGATION = {"or", "nor"}
_BOUNDARIES = {",", ";", ".", "and", "but", "with", "plus", "also", "/", "&", "+"}
_FILLER = {
    "a", "an", "the", "some", "in", "on", "of", "is", "was", "be", "been", "has", "had", "have", "having",
    "wearing", "wears", "wore", "worn", "dressed", "carrying", "carries", "carried", "holding", "holds",
    "held", "who", "that", "which", "person", "someone", "somebody", "people", "pair", "her", "his", "their",
    "she", "he", "they", "it", "its", "pushing", "pulling", "looks", "looked", "looking", "like", "about",
    "walking", "seen", "at", "very", "quite", "rather", "dark", "light", "bright", "pale", "coloured",
    "colored", "colour", "color", "any", "anything", "sort", "kind", "type", "possibly", "maybe", "probably",
    "perhaps", "does", "did", "do", "are", "were", "wear", "carry", "hold", "to", "for", "by", "from", "had",
    "around", "near", "approximately", "approx", "one", "both", "either", "much", "more", "less", "style",
    "my", "sure", "i", "think", "saw", "heavy", "big", "small", "large", "little", "new"}
_FILTER_WORDS = {"camera", "cam", "cameras", "time", "pm", "am", "oclock", "today", "yesterday", "morning",
                 "afternoon", "evening", "night"}

_MAX_PHRASE = max(len(p.split()) for p in list(_GARMENTS) + list(_ATTRIBUTES))
_KNOWN_WORDS = sorted({w for p in list(_GARMENTS) + list(_ATTRIBUTES) for w in p.split()} | set(_COLOURS))


@dataclass(frozen=True)
class Term:
    """One described attribute: its name in the vocabulary, whether it is wanted, the user's words."""

    name: str
    wanted: bool
    said: str

    @property
    def text(self) -> str:
        """The attribute in the reports' words ("backpack", "no backpack")."""
        w = words(self.name)
        return w.present if self.wanted else w.absent


@dataclass
class Description:
    """What a description says: ``terms`` to rank by, and everything said back to the user."""

    text: str
    terms: list[Term] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # "purple-ish: no attribute of this name" ...
    unavailable: list[str] = field(default_factory=list)  # understood, but this vocabulary lacks it
    contradictions: list[str] = field(default_factory=list)  # removed from ``terms``
    corrections: list[tuple[str, str]] = field(default_factory=list)  # (typed, read as)
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Every message for the user, one line each."""
        return ([f"not understood: {u}" for u in self.unmatched]
                + [f"this index has no attribute for {u!r}" for u in self.unavailable]
                + [f"contradiction, left out: {c}" for c in self.contradictions]
                + [f"read {a!r} as {b!r}" for a, b in self.corrections] + self.notes)

    def to_dict(self) -> dict:
        return {"text": self.text, "terms": [{"name": t.name, "wanted": t.wanted, "text": t.text, "said": t.said}
                                             for t in self.terms],
                "unmatched": self.unmatched, "unavailable": self.unavailable, "contradictions": self.contradictions,
                "corrections": [list(c) for c in self.corrections], "notes": self.notes}


def _tokens(text: str) -> list[str]:
    """Lower-case words and boundary marks; hyphens and underscores split words ("t-shirt" -> "t shirt"),
    apostrophes vanish ("doesn't" -> "doesnt"), times stay one token ("14:00")."""
    text = text.lower().replace("'", "").replace("\u2019", "")
    return re.findall(r"\d+:\d+|[a-z0-9]+|[,;./&+]", re.sub(r"[-_]", " ", text))


def _one_edit(a: str, b: str) -> bool:
    """``a`` and ``b`` differ by one adjacent transposition, or (4 letters or more) one letter
    substituted, inserted or deleted."""
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]:
            return True
        return len(diff) == 1 and len(a) >= 4
    short, long_ = sorted((a, b), key=len)
    if len(long_) - len(short) != 1 or len(short) < 4:
        return False
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def _typo(word: str) -> str | None:
    """The known word ``word`` was probably meant to be: the only one a single edit away (a swap of
    two neighbouring letters for 3-letter words), else, for 4 letters or more, the closest by
    difflib's ratio when it is at least ``TYPO_CUTOFF``; None when neither."""
    if len(word) < 3:
        return None
    near = [k for k in _KNOWN_WORDS if abs(len(k) - len(word)) <= 1 and _one_edit(word, k)]
    if len(near) == 1:
        return near[0]
    if len(word) < 4:
        return None
    close = difflib.get_close_matches(word, near or _KNOWN_WORDS, 1, TYPO_CUTOFF)
    return close[0] if close else None


def _colour_attribute(part: str, colour: str, names: set[str]) -> str | None:
    for prefix in _PART_PREFIXES[part]:
        for c in {colour, "gray" if colour == "grey" else colour}:
            name = prefix + c.capitalize()
            if name in names:
                return name
    return None


def _resolve(alts: Sequence[Alt], names: set[str]) -> Alt | None:
    return next((a for a in alts if a[0] in names), None)


def _phrase_at(toks: list[str], i: int) -> tuple[int, str] | None:
    """The longest known phrase starting at ``toks[i]``: (its length, the phrase)."""
    for n in range(min(_MAX_PHRASE, len(toks) - i), 0, -1):
        phrase = " ".join(toks[i:i + n])
        if phrase in _GARMENTS or phrase in _ATTRIBUTES:
            return n, phrase
    return None


def _move_lengths(toks: list[str]) -> list[str]:
    """ "long black hair" -> "black long hair": a length word before colours goes next to its noun."""
    toks = list(toks)
    for i in range(len(toks)):
        if toks[i] in ("long", "short") and _phrase_at(toks, i) is None:
            j = i + 1
            while j < len(toks) and (toks[j] in _COLOURS or toks[j] in _FILLER):
                j += 1
            if j < len(toks) and j > i + 1 and _phrase_at([toks[i]] + toks[j:], 0) is not None:
                toks = toks[:i] + toks[i + 1:j] + [toks[i]] + toks[j:]
    return toks


# pairs of attributes that cannot both hold (wanted together: a contradiction)
_EXCLUSIVE = [("personalMale", "personalFemale"), ("hairLong", "hairShort"), ("hairBald", "hairLong"),
              ("upperBodyShortSleeve", "upperBodyLongSleeve"), ("upperBodyNoSleeve", "upperBodyLongSleeve"),
              ("upperBodyNoSleeve", "upperBodyShortSleeve"), ("lowerBodyShorts", "lowerBodyTrousers"),
              ("lowerBodyShortSkirt", "lowerBodyLongSkirt")]
_AGES = ["personalLess15", "personalLess30", "personalLess45", "personalLess60", "personalLarger60"]
_EXCLUSIVE += [(a, b) for i, a in enumerate(_AGES) for b in _AGES[i + 1:]]
_CARRIED = ["carryingBackpack", "carryingMessengerBag", "carryingPlasticBags", "carryingOther", "carryingBabyBuggy",
            "carryingShoppingTro", "carryingUmbrella", "carryingFolder", "carryingLuggageCase", "carryingSuitcase"]
_WORN = ["accessoryHat", "accessoryMuffler", "accessorySunglasses", "accessoryHeadphone", "accessoryHairBand",
         "accessoryKerchief"]
_EXCLUSIVE += [("carryingNothing", c) for c in _CARRIED] + [("accessoryNothing", a) for a in _WORN]
_EXCLUSIVE += [("ageYoung", "ageTeenager"), ("ageYoung", "ageAdult"), ("ageYoung", "ageOld"),
               ("ageTeenager", "ageAdult"), ("ageTeenager", "ageOld"), ("ageAdult", "ageOld")]


def parse_description(text: str, names: Sequence[str]) -> Description:
    """Read ``text`` against the attribute vocabulary ``names`` (see the module's docstring)."""
    vocab = set(names)
    out = Description(text)
    raw: list[Term] = []
    toks = _tokens(text)
    for i, t in enumerate(toks):
        if t.isalpha() and t not in _KNOWN_WORDS and t not in _FILLER and t not in _NEGATIONS \
                and t not in _FILTER_WORDS and t not in _BOUNDARIES:
            singular = t[:-1] if t.endswith("s") and t[:-1] in _KNOWN_WORDS else None
            close = singular or _typo(t)
            if close:
                if not singular:
                    out.corrections.append((t, close))
                toks[i] = close

    toks = _move_lengths(toks)
    negated = False
    colours: list[tuple[str, str]] = []  # pending (colour, the word said)
    last_part: str | None = None  # the body part last named in this clause
    clause_terms_start = 0

    def add(alts: Sequence[Alt], said: str) -> None:
        chosen = _resolve(alts, vocab)
        if chosen is None:
            out.unavailable.append(said)
            return
        name, wanted = chosen
        raw.append(Term(name, wanted != negated, said))

    def add_colours(part: str, noun: str) -> None:
        for colour, said in colours:
            name = _colour_attribute(part, colour, vocab)
            phrase = f"{'no ' if negated else ''}{said} {noun}"
            if name is None:
                out.unavailable.append(phrase)
            else:
                raw.append(Term(name, not negated, phrase))
        colours.clear()

    def end_clause() -> None:
        nonlocal negated, last_part
        if colours:
            if last_part is not None:  # "top red", "shirt: red"
                add_colours(last_part, _PART_WORDS[last_part])
            else:
                for _, said in colours:
                    out.unmatched.append(f"{said} (the colour of what? say e.g. '{said} top', '{said} trousers', "
                                         f"'{said} shoes' or '{said} hair')")
                colours.clear()
        negated, last_part = False, None

    i = 0
    while i < len(toks):
        t = toks[i]
        found = _phrase_at(toks, i)
        if found is not None:
            n, phrase = found
            said = " ".join(toks[i:i + n])
            if phrase in _GARMENTS:
                part, alts = _GARMENTS[phrase]
                coloured = bool(colours)
                if colours:
                    add_colours(part, said)
                if alts and not (coloured and phrase in _GENERIC):
                    add(alts, ("no " if negated else "") + said)
                last_part = part
            else:
                add(_ATTRIBUTES[phrase], ("no " if negated else "") + said)
            i += n
            continue
        if t in _COLOURS:
            colours.append((_COLOURS[t], t))
        elif t in _NEGATIONS:
            negated = True
        elif t in _BOUNDARIES or t in _KEEP_NEGATION:
            if colours and i + 1 < len(toks) and toks[i + 1] in _COLOURS:
                pass  # "red and white top": one part, two colours
            elif t in _BOUNDARIES:
                end_clause()
        elif t in _FILLER:
            pass
        elif t in _FILTER_WORDS or re.fullmatch(r"\d+(:\d+)?", t):
            note = "cameras and times are filters: use the camera / after / before options"
            if note not in out.notes:
                out.notes.append(note)
        else:
            out.unmatched.append(t)
        i += 1
    end_clause()
    out.terms = _settle(raw, out)
    return out


def _settle(raw: list[Term], out: Description) -> list[Term]:
    """One term per attribute; an attribute both wanted and not, or two that cannot both hold, are
    contradictions: named in ``out`` and left out."""
    by_name: dict[str, list[Term]] = {}
    for t in raw:
        by_name.setdefault(t.name, []).append(t)
    drop: set[str] = set()
    for name, ts in by_name.items():
        if len({t.wanted for t in ts}) > 1:
            out.contradictions.append(" / ".join(dict.fromkeys(t.said for t in ts)))
            drop.add(name)
    wanted = {n for n, ts in by_name.items() if n not in drop and ts[0].wanted}
    for a, b in _EXCLUSIVE:
        if a in wanted and b in wanted:
            first, second = sorted((a, b), key=lambda n: raw.index(by_name[n][0]))  # in the order said
            out.contradictions.append(f"{by_name[first][0].said} / {by_name[second][0].said}")
            drop |= {a, b}
    # two colours for one part: allowed ("red and white top"), but said
    parts: dict[str, list[str]] = {}
    for n in wanted - drop:
        w = words(n)
        if w.exclusive:
            parts.setdefault(w.part or w.exclusive, []).append(by_name[n][0].said)
    for part, said in parts.items():
        if len(said) > 1:
            out.notes.append(f"several colours for the {part} ({', '.join(sorted(said))}): each is required")
    return [ts[0] for n, ts in by_name.items() if n not in drop]


# --- the other way: attributes -> words that parse back ------------------------------------------------

def phrase(name: str, wanted: bool, names: Sequence[str] | None = None) -> str:
    """Words for one attribute that ``parse_description(..., names)`` reads back as (name, wanted):
    "woman", "no backpack", "red top", "no blue trousers". KeyError when there are none."""
    vocab = set(names) if names is not None else {name}
    for table in (_ATTRIBUTES, {p: alts for p, (_, alts) in _GARMENTS.items()}):
        for text, alts in table.items():
            if _resolve(alts, vocab) == (name, wanted):
                return text
    for table in (_ATTRIBUTES, {p: alts for p, (_, alts) in _GARMENTS.items()}):
        for text, alts in table.items():
            if _resolve(alts, vocab) == (name, not wanted):
                return "no " + text
    for part, prefixes in _PART_PREFIXES.items():
        for prefix in prefixes:
            colour = name[len(prefix):].lower() if name.startswith(prefix) else ""
            colour = "grey" if colour == "gray" else colour
            if colour in _COLOURS and _colour_attribute(part, colour, vocab | {name}) == name:
                return f"{'' if wanted else 'no '}{colour} {_PART_WORDS[part]}"
    raise KeyError(f"no words for attribute {name!r}")


def describable(names: Sequence[str]) -> list[str]:
    """The attributes of ``names`` a description can state."""
    out = []
    for n in names:
        try:
            phrase(n, True, names)
            out.append(n)
        except KeyError:
            pass
    return out


def terms_text(terms: Sequence[tuple[str, bool]], names: Sequence[str] | None = None) -> str:
    """A description from (attribute, wanted) pairs: "woman, red top, backpack, no hat"."""
    return ", ".join(phrase(n, w, names if names is not None else [t for t, _ in terms]) for n, w in terms)


def description_of(names: Sequence[str], probabilities: Sequence[float], reliable: Sequence[bool],
                   sure: float = 0.1) -> str:
    """"Describe this person": the reliable attributes an image surely has (calibrated p >= 0.5 +
    ``sure``) in words that parse back, plus those whose absence reads as a description of its own
    ("woman" for a surely-not-male, "short hair") when surely absent. One colour per body part
    (the most likely); attributes that cannot both hold are left out."""
    p = np.asarray(probabilities, np.float64)
    picked: list[tuple[str, bool]] = []
    best_colour: dict[str, int] = {}
    for a, n in enumerate(names):
        if not reliable[a]:
            continue
        w = words(n)
        if w.exclusive:
            if p[a] >= 0.5 + sure and (w.exclusive not in best_colour or p[a] > p[best_colour[w.exclusive]]):
                best_colour[w.exclusive] = a
            continue
        try:
            if p[a] >= 0.5 + sure:
                picked.append((n, True))
            elif p[a] <= 0.5 - sure and not phrase(n, False, names).startswith("no "):
                picked.append((n, False))
        except KeyError:
            continue
    picked += [(names[a], True) for a in best_colour.values()]
    if not picked:
        return ""
    settled = parse_description(terms_text(picked, names), names).terms
    return terms_text([(t.name, t.wanted) for t in settled], names)
