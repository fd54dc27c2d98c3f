"""Attribute vocabularies in an analyst's words: a display label, the words for "absent", and a group.

Dataset names (``upperBodyVNeck``, ``personalLarger60``) stay in the JSON; reports and the search
page show these words ("V-neck", "age over 60"; "no backpack"). Groups order what a reader sees:
person, carrying, upper body, lower body, footwear, accessories. Colours of one body part form an
*exclusive group*: a top is normally one colour, so two colours both predicted for one top are
resolved or flagged by the report rather than listed as two facts.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUPS: tuple[str, ...] = ("person", "carrying", "upper body", "lower body", "footwear", "accessories", "hair")


@dataclass(frozen=True)
class AttributeWords:
    """How one attribute reads: ``present`` ("backpack"), ``absent`` ("no backpack"), its ``group`` and,
    for colours, the exclusive group it belongs to (e.g. "top colour") and the part it colours ("top")."""

    name: str
    present: str
    absent: str
    group: str
    exclusive: str | None = None
    part: str | None = None


def _attr(name: str, present: str, group: str, absent: str | None = None) -> AttributeWords:
    return AttributeWords(name, present, absent or f"no {present}", group)


_PETA_COLOURS = ("Black", "Blue", "Brown", "Green", "Grey", "Orange", "Pink", "Purple", "Red", "White", "Yellow")
_PETA_PARTS = {"upperBody": ("top", "upper body"), "lowerBody": ("trousers / skirt", "lower body"),
               "hair": ("hair", "hair"), "footwear": ("shoes", "footwear")}

_PETA_WORDS = [
    _attr("personalMale", "man", "person", "woman"),
    _attr("personalFemale", "woman", "person", "man"),
    _attr("personalLess15", "age under 15", "person", "not under 15"),
    _attr("personalLess30", "age 15-30", "person", "not aged 15-30"),
    _attr("personalLess45", "age 30-45", "person", "not aged 30-45"),
    _attr("personalLess60", "age 45-60", "person", "not aged 45-60"),
    _attr("personalLarger60", "age over 60", "person", "not over 60"),
    _attr("hairLong", "long hair", "hair", "short hair"),
    _attr("hairShort", "short hair", "hair", "not short hair"),
    _attr("hairBald", "bald", "hair", "not bald"),
    _attr("carryingBackpack", "backpack", "carrying"),
    _attr("carryingMessengerBag", "shoulder bag", "carrying"),
    _attr("carryingPlasticBags", "plastic bag", "carrying"),
    _attr("carryingNothing", "carrying nothing", "carrying", "carrying something"),
    _attr("carryingOther", "carrying something else", "carrying", "nothing else carried"),
    _attr("carryingBabyBuggy", "baby buggy", "carrying"),
    _attr("carryingShoppingTro", "shopping trolley", "carrying"),
    _attr("carryingUmbrella", "umbrella", "carrying"),
    _attr("carryingFolder", "folder", "carrying"),
    _attr("carryingLuggageCase", "luggage case", "carrying"),
    _attr("carryingSuitcase", "suitcase", "carrying"),
    _attr("upperBodyCasual", "casual top", "upper body", "not a casual top"),
    _attr("upperBodyFormal", "formal top", "upper body", "not a formal top"),
    _attr("upperBodyJacket", "jacket", "upper body"),
    _attr("upperBodyLogo", "logo on top", "upper body", "no logo on top"),
    _attr("upperBodyPlaid", "plaid top", "upper body", "no plaid top"),
    _attr("upperBodyShortSleeve", "short sleeves", "upper body", "long sleeves"),
    _attr("upperBodyLongSleeve", "long sleeves", "upper body", "short sleeves"),
    _attr("upperBodyNoSleeve", "sleeveless", "upper body", "has sleeves"),
    _attr("upperBodyThinStripes", "thin-striped top", "upper body", "no thin stripes on top"),
    _attr("upperBodyThickStripes", "thick-striped top", "upper body", "no thick stripes on top"),
    _attr("upperBodyTshirt", "T-shirt", "upper body"),
    _attr("upperBodySweater", "sweater", "upper body"),
    _attr("upperBodySuit", "suit jacket", "upper body"),
    _attr("upperBodyOther", "other top", "upper body", "not another kind of top"),
    _attr("upperBodyVNeck", "V-neck", "upper body"),
    _attr("lowerBodyCasual", "casual trousers / skirt", "lower body", "not casual below"),
    _attr("lowerBodyFormal", "formal trousers / skirt", "lower body", "not formal below"),
    _attr("lowerBodyJeans", "jeans", "lower body"),
    _attr("lowerBodyShorts", "shorts", "lower body"),
    _attr("lowerBodyShortSkirt", "short skirt", "lower body"),
    _attr("lowerBodyLongSkirt", "long skirt", "lower body"),
    _attr("lowerBodyTrousers", "trousers", "lower body"),
    _attr("lowerBodyCapri", "capri trousers", "lower body"),
    _attr("lowerBodyHotPants", "hot pants", "lower body"),
    _attr("lowerBodyPlaid", "plaid trousers / skirt", "lower body", "no plaid below"),
    _attr("lowerBodyThinStripes", "striped trousers / skirt", "lower body", "no stripes below"),
    _attr("lowerBodySuits", "suit trousers", "lower body"),
    _attr("footwearLeatherShoes", "leather shoes", "footwear"),
    _attr("footwearSandals", "sandals", "footwear"),
    _attr("footwearShoes", "shoes", "footwear"),
    _attr("footwearSneakers", "sneakers", "footwear"),
    _attr("footwearBoots", "boots", "footwear"),
    _attr("footwearStocking", "stockings", "footwear"),
    _attr("accessoryHat", "hat", "accessories"),
    _attr("accessoryMuffler", "scarf", "accessories"),
    _attr("accessorySunglasses", "sunglasses", "accessories"),
    _attr("accessoryHeadphone", "headphones", "accessories"),
    _attr("accessoryHairBand", "hair band", "accessories"),
    _attr("accessoryKerchief", "kerchief", "accessories"),
    _attr("accessoryNothing", "no accessories", "accessories", "wears an accessory"),
] + [AttributeWords(f"{part}{colour}", f"{colour.lower()} {noun}", f"{noun} not {colour.lower()}", group,
                    f"{noun} colour", noun)
     for part, (noun, group) in _PETA_PARTS.items() for colour in _PETA_COLOURS]

_MARKET_WORDS = [
    _attr("backpack", "backpack", "carrying"),
    _attr("bag", "bag", "carrying"),
    _attr("handbag", "handbag", "carrying"),
    _attr("hat", "hat", "accessories"),
    _attr("female", "woman", "person", "man"),
    _attr("longHair", "long hair", "hair", "short hair"),
    _attr("shortSleeve", "short sleeves", "upper body", "long sleeves"),
    _attr("shortLowerBody", "shorts / short skirt", "lower body", "long trousers / skirt"),
    _attr("dress", "dress", "lower body", "trousers"),
    _attr("ageYoung", "child", "person", "not a child"),
    _attr("ageTeenager", "teenager", "person", "not a teenager"),
    _attr("ageAdult", "adult", "person", "not an adult"),
    _attr("ageOld", "elderly", "person", "not elderly"),
] + [AttributeWords(f"up{c}", f"{c.lower()} top", f"top not {c.lower()}", "upper body", "top colour", "top")
     for c in ("Black", "Blue", "Green", "Gray", "Purple", "Red", "White", "Yellow")] + [
    AttributeWords(f"down{c}", f"{c.lower()} trousers / skirt", f"trousers / skirt not {c.lower()}", "lower body",
                   "trousers / skirt colour", "trousers / skirt")
    for c in ("Black", "Blue", "Brown", "Gray", "Green", "Pink", "Purple", "White", "Yellow")]

WORDS: dict[str, AttributeWords] = {w.name: w for w in _PETA_WORDS + _MARKET_WORDS}


def words(name: str) -> AttributeWords:
    """The words for attribute ``name``; an unknown name reads as itself (group "other"), so a
    user's own vocabulary still renders."""
    return WORDS.get(name) or AttributeWords(name, name, f"not {name}", "other")


def group_order(group: str) -> int:
    return GROUPS.index(group) if group in GROUPS else len(GROUPS)
