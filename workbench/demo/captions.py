"""Template captions for the synthetic demo world: matched, partial, unsafe (stand-in), junk and
html-ish captions, drawn from one seeded ``random.Random`` per block of rows."""
from __future__ import annotations

import random

from workbench.demo.textencoder import _TOKEN
from workbench.demo.vocabulary import _CI, OBJECT_NAMES, OBJECTS, SCENES, STYLES

_NOUNS = {
    "cat": ["cat", "kitten", "tabby cat", "kitty"], "dog": ["dog", "puppy", "black dog", "labrador"],
    "bird": ["bird", "parrot", "small bird", "owl"], "horse": ["horse", "pony", "brown horse"],
    "cow": ["cow", "cows", "calf"], "car": ["car", "red car", "sports car", "vintage car"],
    "bicycle": ["bicycle", "bike", "road bike"], "boat": ["boat", "sailboat", "fishing boat", "yacht"],
    "airplane": ["airplane", "plane", "jet"], "flower": ["flower", "roses", "tulips", "bouquet of flowers"],
    "tree": ["tree", "oak tree", "trees"], "pizza": ["pizza", "pepperoni pizza", "homemade pizza"],
    "cake": ["cake", "birthday cake", "cupcake", "chocolate cake"], "cup": ["cup", "coffee mug", "cup of tea"],
    "chair": ["chair", "wooden chair", "armchair"], "house": ["house", "cottage", "old house"],
    "book": ["book", "books", "open book"], "camera": ["camera", "vintage camera", "dslr camera"],
    "clock": ["clock", "wall clock", "alarm clock"], "guitar": ["guitar", "acoustic guitar", "electric guitar"],
    "shoe": ["shoes", "sneakers", "leather boots"], "dress": ["dress", "red dress", "wedding dress"],
    "teddy bear": ["teddy bear", "teddy", "plush teddy bear"],
}
_SCENE_AT = {
    "beach": ["on the beach", "at the beach", "by the sea"],
    "city street": ["on a city street", "in the city", "on the street", "downtown"],
    "forest": ["in the forest", "in the woods"], "kitchen": ["in the kitchen", "in a kitchen"],
    "mountain": ["in the mountains", "on a mountain", "in the alps"], "snow": ["in the snow", "in winter snow"],
    "night": ["at night", "at nighttime"], "office": ["in the office", "on an office desk"],
    "garden": ["in the garden", "in the park", "on the lawn"],
    "studio": ["on a white background", "in the studio", "isolated on white background"],
    "bedroom": ["in the bedroom", "on the bed"],
}
_SCENE_NOUN = {
    "beach": ["the beach", "a sandy beach", "the seaside"], "city street": ["a city street", "the city", "a busy street"],
    "forest": ["the forest", "a forest path", "the woods"], "kitchen": ["a kitchen", "a modern kitchen"],
    "mountain": ["the mountains", "a mountain peak", "the alps"], "snow": ["snow", "a snowy field", "winter snow"],
    "night": ["the night", "a starry night"], "office": ["an office", "the office desk"],
    "garden": ["a garden", "the park", "a backyard garden"], "studio": ["a studio", "a white background"],
    "bedroom": ["a bedroom", "a cozy bedroom"],
}
_STYLE_PRE = {
    "photo": ["a photo of", "photo of", "a close-up photo of", "a picture of", "", "", "", ""],
    "painting": ["a painting of", "oil painting of", "watercolor painting of", "an artwork of"],
    "sketch": ["a pencil sketch of", "a drawing of", "sketch of", "charcoal drawing of"],
    "cartoon": ["a cartoon of", "cartoon illustration of", "anime drawing of", "clipart of"],
    "3d render": ["a 3d render of", "3d model of", "cgi render of"],
    "vintage": ["a vintage photo of", "retro picture of", "an antique photograph of"],
}
_STYLE_WORD = {"photo": "photo", "painting": "painting", "sketch": "sketch", "cartoon": "cartoon",
               "3d render": "3d render", "vintage": "vintage photo"}
_PARENT_WORD = {"animal": "an animal", "vehicle": "a vehicle", "plant": "a plant", "food": "some food",
                "furniture": "furniture", "clothing": "clothes", "toy": "a toy", "thing": "a thing"}
_ADJ = ["cute", "beautiful", "small", "big", "white", "black", "happy", "funny", "lovely", "amazing"]
_SUFFIX = [" | free download", " - image", " wallpaper", " #travel", ", high quality", " for sale", " (2019)",
           " - Pinterest", " 4k", " hd", " #instagood", " on Etsy"]
_PERSON = ["woman", "man", "person", "couple", "people", "lady"]
_JUNK_SHORT = ["", "1", "-", "...", "img", "jpg", "pic", "foto", "a"]
_QUOTES = ["keep calm", "good vibes only", "hello summer", "live laugh love", "best day ever"]


def _art(noun: str) -> str:
    if noun.endswith("s") and not noun.endswith("ss") and noun not in ("bus",):
        return noun  # plurals and mass nouns go bare
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _bare(noun: str) -> str:
    for article in ("a ", "an ", "the "):
        if noun.startswith(article):
            return noun[len(article):]
    return noun


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p).strip()


class _Captioner:
    """Template captions for one block. All randomness comes from one seeded `random.Random`."""

    def __init__(self, r: random.Random):
        self.r = r

    def subject(self, a: dict, i: int) -> str:
        r = self.r
        o1, o2 = a["obj1"][i], a["obj2"][i]
        subj = a["subj"][i]
        if subj == 1:  # person
            who = r.choice(_PERSON)
            s = _art(who) if who not in ("people",) else who
            if o1 >= 0:
                s += " with " + _art(r.choice(_NOUNS[OBJECT_NAMES[o1]]))
            return s
        if subj == 2:  # child
            who = r.choice(["a child", "a little girl", "a little boy", "kids", "a baby", "children", "a toddler"])
            if a["person"][i]:
                who = r.choice(["mother and child", "a family with kids", "father and baby"])
            if o1 >= 0:
                who += " with " + _art(r.choice(_NOUNS[OBJECT_NAMES[o1]]))
            return who
        if o1 < 0:
            return ""
        noun = r.choice(_NOUNS[OBJECT_NAMES[o1]])
        if r.random() < 0.2:
            noun = r.choice(_ADJ) + " " + noun
        s = _art(noun)
        if o2 >= 0:
            s += " and " + _art(r.choice(_NOUNS[OBJECT_NAMES[o2]]))
        return s

    def matched(self, a: dict, i: int) -> str:
        r = self.r
        scene, style = SCENES[a["scene"][i]], STYLES[a["style"][i]]
        subj = self.subject(a, i)
        at = r.choice(_SCENE_AT[scene]) if r.random() < 0.8 else ""
        if a["txt"][i] and r.random() < 0.7:
            thing = subj or r.choice(_SCENE_NOUN[scene])
            return r.choice([f"{thing} poster with text", f'quote "{r.choice(_QUOTES)}" with {thing}',
                             f"{thing} logo", f"funny meme, {thing}", f"sale banner with {thing}",
                             f"{thing} sign {at}".strip()])
        if a["stock"][i]:
            thing = _join(subj, at) if subj else r.choice(_SCENE_NOUN[scene])
            if scene == "studio" and subj and r.random() < 0.5:
                return f"{subj} isolated on white background"
            if not a["wm"][i] and r.random() < 0.1:
                return f"free {thing} photo, no watermark"
            return r.choice([f"Stock Photo - {thing}", f"{thing} stock photo", f"Royalty free image of {thing}",
                             f"{thing} - stock image", f"{thing}. Stock photo #{r.randrange(10**6, 10**7)}",
                             f"{thing} - 123RF"])
        if not subj:  # a scene without a subject
            noun = r.choice(_SCENE_NOUN[scene])
            pre = r.choice(_STYLE_PRE[style])
            return r.choice([_join(pre, noun), f"beautiful view of {noun}", f"{_bare(noun)} landscape", _join(pre, noun)])
        if a["obj1"][i] == _CI["cup"] and a["subj"][i] == 0 and r.random() < 0.15:
            return _join("hot coffee in", subj, at)  # a 'hot ' keyword on a safe row
        if a["subj"][i] == 0 and OBJECTS[OBJECT_NAMES[a["obj1"][i]]] == "animal" and r.random() < 0.04:
            return _join("adult", OBJECT_NAMES[a["obj1"][i]], at)  # 'adult' on a safe row
        if a["obj1"][i] == _CI["shoe"] and r.random() < 0.2:
            return _join("baby shoes", at)  # 'baby' without a child
        pre = r.choice(_STYLE_PRE[style])
        form = r.random()
        if form < 0.55:
            cap = _join(pre, subj, at)
        elif form < 0.7:
            cap = _join(subj, at) + (f", {_STYLE_WORD[style]}" if style != "photo" else "")
        elif form < 0.85:
            cap = _join(pre, subj)
        else:
            cap = _join(subj, at, "-", _STYLE_WORD[style])
        if scene == "beach" and r.random() < 0.05:
            cap = "hot summer day: " + cap
        return cap

    def partial(self, a: dict, i: int) -> str:
        r = self.r
        scene, style = SCENES[a["scene"][i]], STYLES[a["style"][i]]
        subj = self.subject(a, i)
        choice = r.random()
        if subj and choice < 0.35:  # right subject, wrong scene
            other = r.choice([s for s in SCENES if s != scene])
            return _join(r.choice(_STYLE_PRE[style]), subj, r.choice(_SCENE_AT[other]))
        if choice < 0.65:  # only the scene or the style
            return r.choice([f"beautiful {_bare(r.choice(_SCENE_NOUN[scene]))}", f"vacation {r.choice(_SCENE_AT[scene])}",
                             f"my {_STYLE_WORD[style]}", f"{_STYLE_WORD[style]} {r.randrange(1, 500)}",
                             f"{r.choice(_SCENE_NOUN[scene])}, summer {r.randrange(2005, 2023)}"])
        o1 = a["obj1"][i]
        if o1 >= 0 and OBJECTS[OBJECT_NAMES[o1]] and choice < 0.85:  # a vaguer word
            return _join(_PARENT_WORD[OBJECTS[OBJECT_NAMES[o1]]], r.choice(_SCENE_AT[scene]))
        if a["obj2"][i] >= 0:  # the second object only
            return _art(r.choice(_NOUNS[OBJECT_NAMES[a["obj2"][i]]]))
        return r.choice(["best price", "new arrivals", "click to enlarge", "my favourite", "summer collection",
                         "welcome to our website", "gift ideas"]) + (f" - {subj}" if subj and r.random() < 0.5 else "")

    def unsafe(self, a: dict, i: int, keyword: bool) -> str:
        r = self.r
        at = r.choice(_SCENE_AT[SCENES[a["scene"][i]]])
        who = r.choice(["woman", "model", "man", "couple"])
        sw = _STYLE_WORD[STYLES[a["style"][i]]]
        if a["unsafe"][i] == 1:
            if keyword:
                return r.choice([f"sexy model {at}", f"hot model posing {at}", f"adult content - {who} {at}",
                                 f"xxx {who} {at}", f"nsfw {sw} of a {who}", f"explicit adult {sw} {at}",
                                 f"hot sexy {who} {at}", f"18+ uncensored {sw}", f"nude {who} {at}",
                                 f"{who} in lingerie {at}"])
            return r.choice([f"{who} {at}", f"model posing {at}", f"portrait of a {who} {at}", f"beautiful {who}",
                             f"glamour {sw} {at}", f"{sw} {r.randrange(1000, 9999)}"])
        if keyword:
            return r.choice([f"horror movie scene {at}", f"bloody scene {at}", "gore special effects makeup",
                             f"violent crime scene {at}", "zombie halloween makeup with blood",
                             f"graphic injury {sw}"])
        return r.choice([f"movie still {at}", "halloween party", f"scene {at}", f"{sw} of a {who} {at}"])

    def junk(self) -> str:
        r = self.r
        if r.random() < 0.4:
            return r.choice(_JUNK_SHORT)
        return r.choice([f"IMG_{r.randrange(10000):04d}", f"DSC{r.randrange(100000):05d}.JPG",
                         f"P10{r.randrange(100000):05d}.jpg", f"DSCN{r.randrange(10000):04d}", "untitled",
                         "unnamed", "image", "thumbnail", f"{r.getrandbits(32):08x}", "no title",
                         f"file_{r.randrange(10**6):06d}", f"image{r.randrange(1000)}"])

    def html(self, cap: str) -> str:
        r = self.r
        return r.choice([f"<b>{cap}</b>", f"<script>alert(1)</script> {cap}", f"{cap} &amp; more",
                         f'<a href="https://synthetic.invalid/">{cap}</a>', f"<img src=x onerror=alert(1)>{cap}",
                         f"{cap}<br/>", f"&lt;i&gt;{cap}&lt;/i&gt;", f"<i>{cap}</i> &quot;new&quot;"])

    def decorate(self, cap: str) -> str:
        r = self.r
        if r.random() < 0.15:
            cap += r.choice(_SUFFIX)
        if r.random() < 0.12:
            cap = cap.title()
        return cap


def _slug(text: str) -> str:
    return "-".join(_TOKEN.findall(text.lower())[:6])
