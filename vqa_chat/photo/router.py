"""The photo question router: which photo fact answers a question, by plain word rules (no model).

A question is first normalised: lower case, contractions spelled out ("what's" -> "what is"), a few typos
fixed (a short list, plus words one edit away from the rules' key words), "colour" read as "color", and
polite wrappers ("can you tell me", "please", "and ...") taken off the ends. Then RULES are tried in
order and the first one with a matching phrase gives the intent; nothing matching is "unknown". The order
matters: specific things first (codes, dates, prices, clock times, "read it", "are there people", questions
no photo fact can answer, "describe ...", "is it blurry" or "is the text cut off"), then colour, "what kind
of X is this", text, light, quality, people, describe, identify, and last "is there a ...".

`parts` splits one message into its questions ("what is this and what colour is it?").
Measured with `python -m vqa_chat.photo.router_eval FILE...`.
"""

from __future__ import annotations

import re

INTENTS = ("identify", "describe", "read", "colour", "people", "light", "quality", "code", "presence", "date",
           "price", "time", "unknown")

# --- normalising --------------------------------------------------------------------------------------
SPELLING = {  # common typos and chat spellings -> what the rules know
    "wat": "what", "wht": "what", "waht": "what", "whta": "what", "teh": "the", "hte": "the",
    "thsi": "this", "tihs": "this", "dis": "this", "u": "you", "r": "are", "ur": "your", "pls": "please",
    "plz": "please", "pic": "picture", "pics": "pictures", "ppl": "people", "reed": "read", "colr": "color",
    "collor": "color", "coulor": "color", "culor": "color", "colur": "color", "goin": "going",
    "any1": "anyone", "some1": "someone", "ther": "there", "writting": "writing", "iz": "is", "im": "i am",
    "whats": "what is", "wheres": "where is", "thats": "that is", "theres": "there is", "whos": "who is",
    "hows": "how is", "isnt": "is not", "dont": "do not", "doesnt": "does not", "cant": "can not",
    "its": "it is",
}
CONTRACTIONS = (("won't", "will not"), ("can't", "can not"), ("n't", " not"), ("'s", " is"), ("'re", " are"),
                ("'m", " am"), ("'ll", " will"), ("'d", " would"), ("'ve", " have"))
FUZZY = ("color", "describe", "description", "picture", "photo", "barcode", "people", "person", "blurry",
         "written", "writing", "focus", "ingredients", "expiration", "identify", "anyone", "someone",
         "somebody", "anybody", "bright", "lighting", "instructions")  # a word one edit from these is a typo
NOT_TYPOS = ("right", "colon", "flurry", "slurry", "fright")  # real words one edit from a FUZZY word
WRAPPERS = ("please", "hi there", "hello there", "hey there", "hi", "hello", "hey", "ok", "okay", "so", "and",
            "also", "then", "now", "but", "well", "um", "uh", "excuse me", "sorry", "kindly", "just",
            "quick question", "can you", "could you", "would you", "will you", "tell me", "let me know",
            "i want to know", "i would like to know", "i need to know", "i wonder", "i was wondering",
            "do you know", "help me", "if", "whether", "i am trying to", "i want to", "i would like to",
            "i need to", "find out", "figure out")  # taken off the front of a question
ENDINGS = ("please", "thanks", "thank you", "for me")  # taken off the end


def _one_edit(a: str, b: str) -> bool:
    """True when `a` becomes `b` by one change, insertion, deletion or swap of two neighbours."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))


def _word(w: str) -> str:
    if w in SPELLING:
        return SPELLING[w]
    if len(w) >= 5 and w not in FUZZY and w not in NOT_TYPOS:
        return next((k for k in FUZZY if _one_edit(w, k)), w)
    return w


def normalise(question: str) -> str:
    """Lower-case words, contractions and typos fixed, polite wrappers removed: "what is this"."""
    text = question.lower().replace("\u2019", "'")
    for short, full in CONTRACTIONS:
        text = text.replace(short, full)
    text = " ".join(_word(w) for w in re.findall(r"[a-z0-9]+", text))
    text = " ".join(re.findall(r"[a-z0-9]+", text.replace("colour", "color")))
    before = None
    while before != text:
        before = text
        for w in WRAPPERS:
            text = re.sub(rf"^{w}\b ?", "", text)
        for w in ENDINGS:
            text = re.sub(rf" ?\b{w}$", "", text)
    return text


def parts(question: str) -> list[str]:
    """The questions inside one message: split at "?", "." and at "and" before a new question."""
    out = []
    for piece in re.split(r"[?!.;]+", question):
        out += re.split(r"\band (?=(?:what|how|is|are|can|could|does|do|who|where|which|read|tell)\b)", piece)
    return [p.strip(" ,") for p in out if p.strip(" ,")] or [question]


# --- the rules ----------------------------------------------------------------------------------------
PHOTO = r"(?:picture|photo|image|shot|pic|photograph)"
COLOUR_NAMES = ("red", "orange", "yellow", "green", "blue", "purple", "violet", "pink", "brown", "black",
                "white", "grey", "gray", "beige", "navy", "maroon", "gold", "golden", "silver", "tan", "teal",
                "turquoise", "cream")
APPLIANCES = ("stove", "oven", "tv", "television", "burner", "heater", "computer", "monitor", "screen",
              "fan", "microwave", "iron", "kettle", "radio", "cooker", "hob", "washer", "dryer", "dishwasher",
              "phone")
PERSONS = r"(?:people|persons?|anyone|anybody|someone|somebody|men|women|kids|children|humans?)"
RELATIONS = (r"(?:neighbou?r|friend|mom|mum|mother|dad|father|wife|husband|son|daughter|brother|sister|boss"
             r"|teacher|colleague|partner|boyfriend|girlfriend|grandma|grandpa|aunt|uncle|cousin)s?")
STATES = ("open", "closed", "shut", "locked", "unlocked", "full", "empty", "clean", "dirty", "broken",
          "plugged in", "hot", "cold", "cooked", "done", "ripe", "fresh", "wet", "dry")

RULES = (  # (intent, phrases): the first rule with a phrase found in the question wins; phrases are regexes
    ("code", (r"qr", r"bar ?codes?", r"upc", r"scan\w*",
              r"(?<!zip )(?<!area )(?<!pin )(?<!promo )(?<!post )codes?")),
    ("date", (r"expir\w*", r"best before", r"best by", r"use by", r"sell by", r"dates?", r"dated",
              r"still (?:good|ok|okay|fine|edible|safe|fresh)",
              r"(?:gone|go|goes|going|went) (?:bad|off|sour)",
              r"out of date", r"past (?:its|the) (?:date|best)", r"shelf life",
              r"when (?:does|will|did) (?:it|this|that|the \w+) (?:expire|go off|run out)")),
    ("price", (r"cost\w*", r"prices?", r"priced", r"how much for", r"(?:the|my|a) total",
               r"how much\b.*\b(?:receipt|menu|tags?|labels?|stickers?|shelf|sign|bill)",
               r"how many (?:dollars|euros|pounds|bucks) (?:is|are|does|do) (?:it|this|that|these|those)\b",
               r"how much (?:is|are|does|do|did|will|would) (?:it|this|that|these|those|they|one"
               r"|(?:the|this|that|these|those|my) (?!worth\b)\w+)"
               r"(?: (?:cost|costs|be|sell for|go for))?$")),
    ("read", (r"what time (?:does|do|is|are|will) .*\b(?:open|close|start|end|leave|arrive|depart)\w*",)),
    ("time", (r"what time is it", r"^what time it is$", r"what is the time", r"the time (?:is|now|shown|on)",
              r"^the time$",
              r"(?:tell|read|give) (?:me )?the time", r"time on (?:the|this|that|my)",
              r"what time is (?:on|shown|showing|displayed)",
              r"(?:clock|watch|timer) (?:say|says|show|shows|read|reads|display|displays)",
              r"what time (?:does|do|is) (?:the|this|that|my|it) (?:clock|watch|display|screen|oven|microwave"
              r"|phone|stove|timer)",
              r"what time\b.*\b(?:clock|watch|display|screen|timer)s? (?:say|says|show|shows|showing|read"
              r"|reads|display|displays|displaying)")),
    ("read", (r"^read", r"read (?:it|this|that|the|me|out|aloud|to)", r"say", r"says", r"according to")),
    ("people", (r"^(?:is|are) there (?:any |some |other |more )?" + PERSONS, r"^how many " + PERSONS,
                r"^(?:am|are) (?:i|we) alone", r"by (?:myself|ourselves)")),
    ("unknown", (  # no photo fact answers these: money, age, feelings, weather, time, states of things...
        r"how much (?:is|are|does|do|did|money|it|this|that|for|will)", r"worth", r"how old", r"age",
        r"happy", r"sad", r"angry", r"upset", r"smil\w+", r"mood", r"feel\w*",
        r"emotions?", r"weather", r"rain\w*", r"snow\w*", r"sunny", r"temperature", r"degrees", r"what time",
        r"what day", r"today", r"denomination", r"bills?", r"dollars?", r"money", r"coins?", r"currency",
        r"safe", r"doing", r"wearing", r"(?:he|she|they) (?:is |are )?\w+ing",
        r"which way", r"directions? to", r"exit", r"^why", r"channel", r"songs?", r"music", r"score",
        r"setting", r"set to", r"asleep", r"awake", r"sleeping", r"the right way", r"way up", r"upside down",
        r"right side up", r"which side", r"front or back", r"^who (?:is|are) (?:this|that|it|he|she|they)",
        r"(?:" + "|".join(APPLIANCES) + r")s? (?:is |are )?"
        r"(?:(?:on|off)(?! (?:the|a|an|my|this|that|top|your)\b)|running|working)",  # "on the desk": a place
        r"^(?:is|are)\b.*\b(?:" + "|".join(STATES) + r")(?: (?:through|yet|now|enough|properly|already"
        r"|right now|all the way))?$",
        r"^(?:is|are) (?:this|that|it|these|those) (?:real|fake|genuine|authentic|original|made of)\b",
        r"cross (?:the )?(?:street|road)", r"what year", r"when was (?:this|it|that) (?:made|built|taken)",
        r"^(?:is|are) (?:this|that|it|he|she|they) (?:my|our|your) " + RELATIONS,
        r"(?:good|bad|cheap|expensive|quality|reliable) brand", r"a good (?:buy|deal|choice|idea)")),
    ("describe", (r"^(?:describe|explain)\b(?!.*\b(?:color|colors|text|writing|words|label)\b)",
                  r"^about (?:this|that|the|my|it)\b")),
    ("quality", (r"(?:all|whole|entire|rest) (?:of )?(?:the )?(?:text|label|words|writing|sign|page)",
                 r"(?:text|label|words|writing|sign|page) (?:is |are )?(?:all |fully |completely )?"
                 r"(?:in (?:the )?(?:frame|picture|photo|shot)|visible|showing)",
                 r"blur\w*", r"focus\w*", r"unfocused", r"fuzzy", r"cut off", r"cut (?:\w+ )?off", r"cropped",
                 r"readable", r"legible", r"clear", r"clearly", r"did i get", r"get it all", r"is it all in",
                 r"in the frame", r"in frame", r"retake", r"shaky", r"everything in (?:the|this|my) " + PHOTO,
                 r"(?:whole|entire|full|complete) \w+ in (?:the|this|my) " + PHOTO,
                 r"(?:whole|entire) \w+ (?:showing|visible|there)",
                 r"(?:move|hold|holding|bring|tilt|turn) (?:the |my )?(?:phone|camera)\b",
                 r"(?:missing|left out|cut out) (?:from|of) (?:the|this|my) " + PHOTO,
                 r"fully visible", r"all visible", r"fingers? (?:in|over|covering)",
                 r"covering the (?:lens|camera)")),
    ("light", (r"pitch black", r"pitch dark")),
    ("colour", (r"colors?", r"colored", r"hue", r"shade of", r"shades",
                r"^(?:is|are) (?!there)\w+.*\b(?:" + "|".join(COLOUR_NAMES) + ")")),  # "is it red?"
    ("identify", (r"^what (?:kind|type|sort) of \w+(?: \w+)? (?:is|are) (?:this|that|it|these|those)$",)),
    ("read", (r"text", r"texts", r"written", r"writing", r"write", r"words?", r"letters?", r"labels?",
              r"titled?", r"name of", r"names?(?! this)", r"author", r"numbers?", r"address", r"street",
              r"ingredients", r"instructions",
              r"directions", r"dosage", r"brand", r"flavou?r", r"signs?", r"screen", r"display", r"menu",
              r"recipe", r"page", r"document", r"receipt", r"handwriting", r"spell\w*", r"printed",
              r"caption", r"headline", r"note", r"message", r"saying", r"isbn", r"calories", r"nutrition\w*",
              r"servings?", r"size", r"cook\w*", r"prepare", r"how long (?:should|do|to|does)", r"medicines?",
              r"medications?", r"pills?", r"prescriptions?", r"tablets?", r"passwords?", r"stickers?",
              r"wi ?fi", r"tags?")),
    ("light", (r"dark\w*", r"dim\w*", r"bright\w*", r"lit", r"unlit", r"lighting", r"lights?", r"night",
               r"(?:lamps?|bulbs?|flashlights?|torch) (?:is |are )?(?:on|off)", r"exposure", r"overexposed",
               r"underexposed", r"glare", r"flash", r"daytime", r"daylight", r"sunlight")),
    ("quality", (r"sharp", r"quality", r"frame", r"framed", r"cent(?:er|re)d", r"angle", r"too close",
                 r"too far", r"visible", r"steady", r"whole", r"entire", r"all of it", r"again",
                 r"another (?:one|picture|photo|shot)", r"camera (?:pointed|aimed)", r"pointed", r"aim\w*",
                 r"good " + PHOTO,
                 PHOTO + r" (?:is |looks? )?(?:any )?(?:ok|okay|good|fine|usable|alright|bad|all right)")),
    ("people", (r"people", r"persons?", r"anyone", r"anybody", r"someone", r"somebody", r"man", r"men",
                r"woman", r"women", r"boys?", r"girls?", r"child", r"children", r"kids?", r"bab(?:y|ies)",
                r"faces?", r"guys?", r"lady", r"ladies", r"humans?", r"crowd", r"who", r"individuals?")),
    ("describe", (r"describe", r"description", r"describing", r"explain", r"scene", r"view", r"surroundings?",
                  r"overview", r"summary", r"summari[sz]e", r"going on", r"happening", r"around me",
                  r"in front of me", r"where am i", r"what (?:do |can )?you see", r"see anything",
                  r"anything", r"everything", r"shown", r"look like", r"looks like", r"tell me about",
                  r"what is there", r"what is here$",
                  r"what is (?:in|on) (?:the|this|my) (?:room|place|area|space)",
                  r"what is (?:in|on) (?:the|this|my) " + PHOTO, PHOTO + " shows?", PHOTO + " of$")),
    ("identify", (r"what (?:is )?(?:this|that|it)",
                  r"^(?:what|which)\b.*\b(?:this|that|it|these|those|thing|object|item|holding|have|got)",
                  r"what (?:is )?(?:the )?(?:kind|type|sort|breed|species|model|make|animal|plant|flower|food"
                  r"|fruit|item|object|product|thing)", r"what (?:vegetable|bird|dog|cat|car)",
                  r"^what is (?:on|in) (?:the|my|this|that)", r"what am i (?:looking|pointing) at",
                  r"identify", r"recogni[sz]e", r"name this",
                  r"^what (?:did|have) i (?:just )?(?:pick\w* up|grab\w*|take|took|taken|buy|bought|find"
                  r"|found|get|got)")),
    ("presence", (r"^(?:is|are) there", r"^there (?:is|are)",
                  r"^(?:is|are) (?:this|that|it|these|those) "
                  r"(?:a|an|my|the|some|any|one|really|actually|real)",
                  r"^(?:this|that|it) (?:is|are) (?:a|an)", r"^are (?:these|those) \w+",
                  r"^(?:do|can|could|did) (?:you|i) see", r"^(?:see|find|spot)",
                  r"^(?:am i|are we) holding (?:a|an|the|my|some|any)",
                  r"^does (?:it|this|that)\b.*\b(?:have|contain|show)",
                  r"^(?:is|are) (?:my|the|a|an|our|your|any) \w+(?: \w+)? (?:in|on) (?:the|this|my) "
                  + PHOTO)),
)
PATTERNS = tuple((name, re.compile(r"\b(?:" + "|".join(phrases) + r")\b")) for name, phrases in RULES)


def route(text: str) -> str:
    """The intent of one normalised question."""
    return next((name for name, pattern in PATTERNS if pattern.search(text)), "unknown")


def intent(question: str) -> str:
    """The intent of a question (of its first part when it has several): one of INTENTS."""
    texts = [t for t in (normalise(p) for p in parts(question)) if t]
    return route(texts[0]) if texts else "unknown"
