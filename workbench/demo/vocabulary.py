"""The synthetic demo world's concept space and word tables (what the world is made of).

Concepts: objects (each with a latent parent: cat and dog share ``animal``), scenes, styles (painting
and cartoon share ``artwork``), marks, people and the unsafe stand-ins ``unsafe_explicit`` /
``unsafe_gore`` (random directions with a name: there is no explicit content anywhere). The
:data:`GEOMETRY` is the tuned mixing of images and captions; :data:`VOCABULARY` maps words and
two-word phrases to concept weights (unknown words get only a hash vector). All of it is recorded in
``world/world.json``, so the text encoder needs nothing else; changing any of it changes the world
(bump :data:`workbench.demo.generate.GENERATOR_VERSION`).
"""
from __future__ import annotations

PARENTS = ("animal", "vehicle", "plant", "food", "furniture", "clothing", "toy", "thing", "photographic", "artwork")
OBJECTS = {  # object -> parent (a latent concept mixed into the object's vector)
    "cat": "animal", "dog": "animal", "bird": "animal", "horse": "animal", "cow": "animal",
    "car": "vehicle", "bicycle": "vehicle", "boat": "vehicle", "airplane": "vehicle",
    "flower": "plant", "tree": "plant", "pizza": "food", "cake": "food", "cup": "food",
    "chair": "furniture", "house": None, "book": "thing", "camera": "thing", "clock": "thing",
    "guitar": "thing", "shoe": "clothing", "dress": "clothing", "teddy bear": "toy",
}
STYLE_PARENTS = {"photo": "photographic", "vintage": "photographic", "painting": "artwork", "sketch": "artwork",
                 "cartoon": "artwork", "3d render": "artwork"}
SCENES = ("beach", "city street", "forest", "kitchen", "mountain", "snow", "night", "office", "garden",
          "studio", "bedroom")
STYLES = ("photo", "painting", "sketch", "cartoon", "3d render", "vintage")
MARKS = ("watermark", "text overlay")
PEOPLE = ("person", "child")
UNSAFE = ("unsafe_explicit", "unsafe_gore")
OBJECT_NAMES = tuple(OBJECTS)
CONCEPTS = OBJECT_NAMES + SCENES + STYLES + MARKS + PEOPLE + UNSAFE + PARENTS
_CI = {c: i for i, c in enumerate(CONCEPTS)}

# The geometry (tuned; see the module docstring). Stored in world.json so the encoder needs nothing else.
# Changing it, the vocabulary or the generation changes the world: bump GENERATOR_VERSION.
GEOMETRY = {
    "img_offset": 0.68,     # a: weight of m_img in an image
    "img_content": 0.55,    # weight of the (normalised) concept mixture in an image
    "img_noise": 0.46,      # sigma: weight of unit gaussian noise in an image
    "img_clarity": [0.8, 1.2],  # per-row factor on the concept weight: how clearly an image shows its concepts
    "txt_offset": 0.866,    # b: weight of m_txt in a caption embedding
    "txt_content": 0.50,    # weight of the (normalised) bag of words in a caption embedding
    "offset_cos": 0.16,     # cosine(m_img, m_txt): the floor of every image-caption cosine
    "parent_mix": 0.45,     # how much of its parent (animal, vehicle, artwork ...) an object or style vector holds
    "word_noise": 0.35,     # a known word = its concepts + this much of its own hash vector
    "unknown_word": 0.30,   # weight of an unknown word's hash vector
    "hash_nnz": 8,          # non-zeros of a word's hash vector (+-1/sqrt(nnz) at hashed positions)
}

# Words and phrases -> concept weights. Unknown words get only a hash vector.
_V: dict[str, dict[str, float]] = {}


def _words(spec: str, **weights: float) -> None:
    for w in spec.split("|"):
        _V[w] = {k.replace("_", " ") if k not in UNSAFE else k: v for k, v in weights.items()}


# objects
_words("cat|cats|kitten|kittens|kitty|tabby", cat=1.0)
_words("dog|dogs|puppy|puppies|doggy|labrador|terrier", dog=1.0)
_words("bird|birds|parrot|sparrow|owl|seagull", bird=1.0)
_words("horse|horses|pony|stallion", horse=1.0)
_words("cow|cows|cattle|calf", cow=1.0)
_words("car|cars|automobile|sedan", car=1.0)
_words("bicycle|bicycles|bike|bikes", bicycle=1.0)
_words("cycling", bicycle=0.8)
_words("boat|boats|sailboat|yacht|ship", boat=1.0)
_words("airplane|airplanes|plane|aircraft|jet|airliner", airplane=1.0)
_words("flower|flowers|rose|roses|tulip|tulips|bouquet", flower=1.0)
_words("tree|trees|oak", tree=1.0)
_words("palm", tree=0.7, beach=0.2)
_words("pizza|pizzas", pizza=1.0)
_words("cake|cakes|cupcake|cupcakes", cake=1.0)
_words("dessert", cake=0.5, food=0.6)
_words("cup|cups|mug|mugs", cup=1.0)
_words("coffee|tea", cup=0.7, food=0.2)
_words("chair|chairs|armchair|stool", chair=1.0)
_words("house|houses|cottage|cabin", house=1.0)
_words("home", house=0.7)
_words("door", house=0.5)
_words("wall", house=0.3, studio=0.2)
_words("book|books|novel", book=1.0)
_words("library", book=0.7, office=0.2)
_words("camera|cameras|dslr", camera=1.0)
_words("clock|clocks", clock=1.0)
_words("guitar|guitars", guitar=1.0)
_words("guitarist", guitar=0.7, person=0.5)
_words("shoe|shoes|sneaker|sneakers|boots|heels", shoe=1.0)
_words("dress|dresses|gown", dress=1.0)
_words("teddy bear|teddy", teddy_bear=1.0)
_words("plush", teddy_bear=0.6, toy=0.5)
_words("bear", animal=0.7, teddy_bear=0.2)
# parents (latent: never a ground-truth object, but words and prompts use them)
_words("animal|animals|mammal|mammals|creature", animal=1.0)
_words("pet|pets", animal=0.7, cat=0.25, dog=0.25)
_words("wildlife", animal=0.8, forest=0.3)
_words("insect|insects", animal=0.6)
_words("pig|pigs|goat|goats|sheep|elephant|elephants|lion|tiger", animal=0.75)
_words("vehicle|vehicles|transport|transportation", vehicle=1.0)
_words("plant|plants", plant=1.0)
_words("nature", plant=0.4, forest=0.4, mountain=0.3)
_words("food|meal|dish|dinner|lunch|breakfast", food=1.0)
_words("furniture", furniture=1.0)
_words("table|tables|sofa|couch", furniture=0.8)
_words("clothes|clothing|fashion|outfit", clothing=1.0)
_words("toy|toys|puppet|puppets", toy=1.0)
_words("play|playing", toy=0.4, child=0.3)
_words("thing|things|object|objects|item|items|lifeless", thing=0.8)
_words("tool|tools", thing=0.6)
_words("material|materials", thing=0.4)
# scenes
_words("beach|beaches|seaside|shore|surf", beach=1.0)
_words("ocean|sea", beach=0.7)
_words("sand|sandy", beach=0.6)
_words("city street|street|streets|downtown|urban", city_street=1.0)
_words("city", city_street=0.8)
_words("road", city_street=0.6)
_words("industry|industrial", city_street=0.4)
_words("forest|forests|woods|woodland|jungle", forest=1.0)
_words("wood", forest=0.5, tree=0.3)
_words("kitchen|kitchens", kitchen=1.0)
_words("cooking", kitchen=0.6, food=0.3)
_words("mountain|mountains|alps|peak", mountain=1.0)
_words("hiking", mountain=0.6)
_words("rock|rocks|stone|stones", mountain=0.5)
_words("snow|snowy|ski|skiing", snow=1.0)
_words("winter", snow=0.8)
_words("night|nighttime|moon", night=1.0)
_words("evening", night=0.6)
_words("dark|neon", night=0.5)
_words("office|offices|desk|workplace", office=1.0)
_words("meeting", office=0.6)
_words("business|computer", office=0.5)
_words("garden|gardens|backyard|lawn", garden=1.0)
_words("park", garden=0.8)
_words("grass", garden=0.6)
_words("ground", garden=0.3)
_words("studio|backdrop|white background", studio=1.0)
_words("isolated", studio=0.6)
_words("bedroom|bedrooms", bedroom=1.0)
_words("bed|beds", bedroom=0.8)
_words("pillow", bedroom=0.6)
# styles
_words("photo|photos|photograph|photographs|photography|picture|pictures|pic|snapshot", photo=1.0)
_words("image|images", photo=0.5)
_words("closeup|close", photo=0.5)
_words("documentary", photo=0.4, photographic=0.5)
_words("news|journalism", photographic=0.5, city_street=0.3, person=0.2)
_words("photographic|photorealistic", photographic=1.0)
_words("painting|paintings|painted|watercolor|watercolour|oil painting", painting=1.0)
_words("oil", painting=0.6)
_words("canvas", painting=0.6)
_words("artwork|artworks", artwork=1.0)
_words("art|artistic", artwork=0.8, painting=0.3)
_words("sketch|sketches|charcoal", sketch=1.0)
_words("drawing|drawings|drawn", sketch=0.8, artwork=0.4)
_words("pencil", sketch=0.7)
_words("illustration|illustrations", cartoon=0.8, artwork=0.6)
_words("cartoon|cartoons|comic|comics|clipart", cartoon=1.0)
_words("anime|manga", cartoon=0.95)
_words("3d render|render|rendering|rendered|cgi", **{"3d render": 1.0})
_words("3d|blender", **{"3d render": 0.8})
_words("vintage|retro|antique|sepia|1950s|1970s", vintage=1.0)
# watermarks and text
_words("watermark|watermarks|watermarked", watermark=1.0)
_words("stock", watermark=0.45, photo=0.3)
_words("stock photo|stock image", watermark=0.5, photo=0.6)
_words("shutterstock|istock|alamy|dreamstime|123rf|depositphotos|getty", watermark=0.6)
_words("royalty free", watermark=0.4)
_words("text|logo|logos|poster|posters|banner|sign|quote|quotes|typography|meme|memes|lettering|label|headline",
       text_overlay=1.0)
_words("ad|ads|advertisement|advertising|commercial", text_overlay=0.7)
_words("sale", text_overlay=0.4)
# people
_words("person|people|woman|women|man|men|lady|ladies|guy|human|humans|grownup|grownups|couple", person=1.0)
_words("model|models", person=0.7)
_words("portrait", person=0.7, photo=0.3)
_words("face|faces", person=0.6)
_words("selfie", person=0.7, photo=0.5)
_words("bride", person=0.7, dress=0.3)
_words("mother|father|parent|parents", person=0.7, child=0.2)
_words("family", person=0.6, child=0.3)
_words("talk show", person=0.5, studio=0.5)
_words("romance|love", person=0.3)
_words("adult|adults", person=0.55, unsafe_explicit=0.35)
_words("child|children|kid|kids|baby|babies|toddler|toddlers|infant|underaged|little girl|little boy|young child|young girl",
       child=1.0)
_words("boy|boys", child=0.6, person=0.3)
_words("girl|girls", child=0.5, person=0.4)
_words("teen|teens|teenager|teenagers", child=0.6, person=0.5)
_words("young", child=0.3)
# unsafe stand-ins (words only so that captions and the release prompt lists map; no content exists)
_words("porn|sex|sexual|nsfw|xxx|explicit|erotic|nude|naked|lust|horny|nipples|breasts|breats|tits|boops|"
       "penis|dick|cock|clitoris|vagina|fuck|sperm|areola|18+", unsafe_explicit=1.0)
_words("uncensored", unsafe_explicit=0.6)
_words("sexy", unsafe_explicit=0.7, person=0.3)
_words("hot", unsafe_explicit=0.35)
_words("lick|licking", unsafe_explicit=0.5)
_words("lingerie", unsafe_explicit=0.6, person=0.3, clothing=0.2)
_words("hentai", unsafe_explicit=1.0, cartoon=0.3)
_words("body", person=0.4, unsafe_explicit=0.2)
_words("skin", person=0.3, unsafe_explicit=0.3)
_words("gore|gory|blood|bloody|violence|violent|brutal|wound|wounds|injury|injuries|corpse|murder", unsafe_gore=1.0)
_words("dead", unsafe_gore=0.6)
_words("horror|zombie", unsafe_gore=0.5)
_words("monster", unsafe_gore=0.3)
_words("crime", unsafe_gore=0.3, night=0.2)
_words("thriller", unsafe_gore=0.2, night=0.2)
_words("weapon", unsafe_gore=0.4)
VOCABULARY: dict[str, dict[str, float]] = dict(sorted(_V.items()))
del _V
STOPWORDS = ("a", "an", "the", "of", "on", "in", "at", "with", "and", "or", "to", "for", "is", "are", "by", "from",
             "this", "that", "it", "its", "as", "be", "my", "your", "our", "their", "his", "her", "into", "near",
             "under", "over", "s")

# LAION-400M's 35 NSFW prompts (crawlingathome clip_filter.py, as in workbench/models/data/): used to
# compute the synthetic world's NSFW column exactly as the release computed its own. The missing comma
# of the original ("insect" "fashion" -> "insectfashion") is kept, and so is the rule's off-by-one.
LAION400M_NSFW_PROMPTS = (
    "neutral", "selfie", "illustration, drawing", "toys, play, kids, children", "teddy bear, puppet",
    "animal, bird, mammal, insectfashion, clothes", "logo, commercial, ad, advertisement", "drawing, painting",
    "anime, cartoon", "comedy, fun", "romance, love story", "thriller, suspense, crime story",
    "action, action movie", "horror, monster movie", "documentary", "news, journalism", "entertainment",
    "talk show",
    "porn, sex, sperm, nipples, breats, tits, boops, penis, dick, cock, clitoris, vagina, fuck, lust, horny, "
    "sexual, lick, licking",
    "porn, sex, sperm, nipples", "porn, sex, sperm, penis, dick, cock", "nipples, breats, tits, boops, sexy",
    "penis, dick, cock", "clitoris, vagina", "sex, fuck, lust, horny, sexual, lick, licking", "porn, sex, sexy",
    "sexy, hot", "sperm, skin", "lust, horny, sexual", "lick, licking, body", "anime, hentai, sexy",
    "cartoon, sexy, sex", "hentai", "anime, sexy, breasts", "hentai",
)
NSFW_SAFE_BELOW = 19  # the release: UNLIKELY if both top-2 indices < 19, NSFW if both >= 19, else UNSURE
