"""Redaction and sentiment, measured: precision and recall of PII redaction on a made set of
utterances (as text, and spoken by espeak-ng through the real engine, so ASR errors count), what
is still audible in the redacted audio, what redaction costs per audio minute, and VADER's
accuracy on sentences we labelled.

    .venv/bin/python bench/redaction.py [--model tiny.en] [--model base] [--audio-check] [--repeat 3]

How it scores: the reference text and the hypothesis are both turned into canonical tokens
(lower case; digits and digit words as single digits; "@" as "at", "." as "dot"), and aligned
with jiwer. A reference token inside a labelled entity passes its label to the hypothesis token
aligned with it (an inserted token inside an entity, too). A hypothesis *word* is personal data
when any of its tokens is; it counts as redacted when the engine replaced it by a tag. Word
precision = redacted personal words / redacted words; word recall = redacted personal words /
personal words. An entity is caught when every hypothesis word aligned with it is redacted
(entities that ASR dropped entirely are counted apart: they cannot leak). Utterances are cached
as WAVs under .cache/bench/redaction/.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import whisperless  # noqa: E402,F401 - first: OpenMP wait policy, before torch loads
from bench.synth import VOICES, say  # noqa: E402

CACHE = ROOT / ".cache" / "bench" / "redaction"
TAG = re.compile(r"^\s*\[[A-Z_]+\]\s*$")

# (spoken text, [(entity type, the words of the text that are that entity)]). Numbers are written as
# people say them (digit by digit), since espeak-ng would read "415" as "four hundred fifteen".
UTTERANCES: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Hi, this is Maria Garcia. You can call me back at five five five, one two one two.",
        [("PERSON", "Maria Garcia"), ("PHONE_NUMBER", "five five five, one two one two")],
    ),
    (
        "My card number is four one one one, one one one one, one one one one, one one one one.",
        [("CREDIT_CARD", "four one one one, one one one one, one one one one, one one one one")],
    ),
    ("Please email me at john dot smith at example dot com.", [("EMAIL_ADDRESS", "john dot smith at example dot com")]),
    (
        "My phone number is four one five, five five five, zero one three two, and my name is David Chen.",
        [("PHONE_NUMBER", "four one five, five five five, zero one three two"), ("PERSON", "David Chen")],
    ),
    (
        "The account holder is Priya Patel and her social security number is one two three, four five, "
        "six seven eight nine.",
        [("PERSON", "Priya Patel"), ("US_SSN", "one two three, four five, six seven eight nine")],
    ),
    (
        "Send the contract to sarah dot jones at gmail dot com before Friday.",
        [("EMAIL_ADDRESS", "sarah dot jones at gmail dot com")],
    ),
    ("Good morning, my name is Robert Johnson and I am calling about my order.", [("PERSON", "Robert Johnson")]),
    ("I moved from Chicago to Denver last spring.", [("LOCATION", "Chicago"), ("LOCATION", "Denver")]),
    (
        "You can reach Emily Watson on two zero two, five five five, zero one seven three.",
        [("PERSON", "Emily Watson"), ("PHONE_NUMBER", "two zero two, five five five, zero one seven three")],
    ),
    (
        "The visa card ends in five five five five, four four four four, three three three three, one one one one.",
        [("CREDIT_CARD", "five five five five, four four four four, three three three three, one one one one")],
    ),
    ("Thank you for calling, this is Michael Brown from customer support.", [("PERSON", "Michael Brown")]),
    (
        "Her new number is six one seven, five five five, zero one nine eight.",
        [("PHONE_NUMBER", "six one seven, five five five, zero one nine eight")],
    ),
    ("Write to support at acme dot io if the problem comes back.", [("EMAIL_ADDRESS", "support at acme dot io")]),
    ("James Wilson will join the meeting in London next week.", [("PERSON", "James Wilson"), ("LOCATION", "London")]),
    (
        "For verification, the social security number is nine eight seven, six five, four three two one.",
        [("US_SSN", "nine eight seven, six five, four three two one")],
    ),
    ("My daughter Olivia Martinez lives in Seattle.", [("PERSON", "Olivia Martinez"), ("LOCATION", "Seattle")]),
    (
        "Please charge the mastercard five four five four, five four five four, five four five four, "
        "five four five four.",
        [("CREDIT_CARD", "five four five four, five four five four, five four five four, five four five four")],
    ),
    (
        "Call Thomas Anderson at three one two, five five five, zero one four six.",
        [("PERSON", "Thomas Anderson"), ("PHONE_NUMBER", "three one two, five five five, zero one four six")],
    ),
    (
        "The invoice went to billing at northwind dot com yesterday.",
        [("EMAIL_ADDRESS", "billing at northwind dot com")],
    ),
    (
        "I spoke with Jennifer Lee and Kevin Nguyen this morning.",
        [("PERSON", "Jennifer Lee"), ("PERSON", "Kevin Nguyen")],
    ),
    ("We are flying from Boston to Miami on the red eye.", [("LOCATION", "Boston"), ("LOCATION", "Miami")]),
    (
        "His mobile is seven one eight, five five five, zero one two three, call after six.",
        [("PHONE_NUMBER", "seven one eight, five five five, zero one two three")],
    ),
    ("My name is Ahmed Hassan and I need to update my address.", [("PERSON", "Ahmed Hassan")]),
    (
        "The card number is three seven eight two, eight two two four, six three one zero, zero zero five.",
        [("CREDIT_CARD", "three seven eight two, eight two two four, six three one zero, zero zero five")],
    ),
    (
        "Contact laura dot kim at outlook dot com for the slides.",
        [("EMAIL_ADDRESS", "laura dot kim at outlook dot com")],
    ),
    (
        "Daniel Taylor signed the lease for the flat in Manchester.",
        [("PERSON", "Daniel Taylor"), ("LOCATION", "Manchester")],
    ),
    (
        "Text me on nine one nine, five five five, zero one five five when you land.",
        [("PHONE_NUMBER", "nine one nine, five five five, zero one five five")],
    ),
    (
        "This is Sophie Dubois calling from Paris about the delivery.",
        [("PERSON", "Sophie Dubois"), ("LOCATION", "Paris")],
    ),
    (
        "Her social security number, one one one, two two, three three three three, is on the form.",
        [("US_SSN", "one one one, two two, three three three three")],
    ),
    (
        "Please forward it to mark dot evans at company dot org.",
        [("EMAIL_ADDRESS", "mark dot evans at company dot org")],
    ),
    (
        "Carlos Rodriguez and Ana Silva are the new team leads.",
        [("PERSON", "Carlos Rodriguez"), ("PERSON", "Ana Silva")],
    ),
    (
        "The old number was eight zero zero, five five five, zero one nine nine.",
        [("PHONE_NUMBER", "eight zero zero, five five five, zero one nine nine")],
    ),
    ("I grew up in Dublin but now I work in Toronto.", [("LOCATION", "Dublin"), ("LOCATION", "Toronto")]),
    (
        "Use the card six zero one one, one one one one, one one one one, one one one seven for the deposit.",
        [("CREDIT_CARD", "six zero one one, one one one one, one one one one, one one one seven")],
    ),
    ("Hello, Rachel Green speaking, how can I help?", [("PERSON", "Rachel Green")]),
    (
        "My email is peter dot parker at dailybugle dot com.",
        [("EMAIL_ADDRESS", "peter dot parker at dailybugle dot com")],
    ),
    (
        "Reach me at four zero four, five five five, zero one three eight or ask for Linda Scott.",
        [("PHONE_NUMBER", "four zero four, five five five, zero one three eight"), ("PERSON", "Linda Scott")],
    ),
    ("The package is stuck in a depot near Phoenix.", [("LOCATION", "Phoenix")]),
    ("Mister William Harris asked us to call him back tomorrow.", [("PERSON", "William Harris")]),
    (
        "Social security, five five five, four four, three three three three, date of birth in March.",
        [("US_SSN", "five five five, four four, three three three three")],
    ),
    (
        "Send the report to anna dot novak at gmail dot com and copy me.",
        [("EMAIL_ADDRESS", "anna dot novak at gmail dot com")],
    ),
    (
        "Jessica Miller from the Austin office approved the budget.",
        [("PERSON", "Jessica Miller"), ("LOCATION", "Austin")],
    ),
    (
        "My number is two one three, five five five, zero one six seven and my name is Brian Clark.",
        [("PHONE_NUMBER", "two one three, five five five, zero one six seven"), ("PERSON", "Brian Clark")],
    ),
    (
        "The amex card is three four one one, one one one one, one one one one, one one one.",
        [("CREDIT_CARD", "three four one one, one one one one, one one one one, one one one")],
    ),
    ("Nathan Wright and his wife moved to Atlanta.", [("PERSON", "Nathan Wright"), ("LOCATION", "Atlanta")]),
    (
        "Her address for invoices is accounts at brightstar dot net.",
        [("EMAIL_ADDRESS", "accounts at brightstar dot net")],
    ),
    (
        "Please call Grace Young at five zero three, five five five, zero one eight two.",
        [("PERSON", "Grace Young"), ("PHONE_NUMBER", "five zero three, five five five, zero one eight two")],
    ),
    ("Alex Turner confirmed the booking in Berlin.", [("PERSON", "Alex Turner"), ("LOCATION", "Berlin")]),
    # Negatives: ordinary talk with numbers, dates and names of things, no personal data.
    ("The meeting starts at ten thirty and should take about an hour.", []),
    ("We sold twenty three units last week, up from fifteen.", []),
    ("The quarterly report is due on Friday and we still need the sales figures.", []),
    ("Please restart the router and wait two minutes before trying again.", []),
    ("Our team grew from eight to twelve people this year.", []),
    ("The total comes to forty nine dollars and ninety nine cents.", []),
    ("Could you send me the slides before the meeting starts tomorrow?", []),
    ("The printer on the second floor is out of paper again.", []),
    ("Version three point two fixes the login problem.", []),
    ("I will be on holiday from the first to the fourteenth of August.", []),
]

# (sentence, label) for VADER: call-centre and meeting talk, including hard cases (negation,
# complaints without sentiment words, politeness around bad news, sarcasm).
SENTIMENT: list[tuple[str, str]] = [
    ("Thank you so much, that was really helpful.", "positive"),
    ("Great, the new version works perfectly.", "positive"),
    ("I'm very happy with the service I received today.", "positive"),
    ("The team did an excellent job on the launch.", "positive"),
    ("That's wonderful news, congratulations!", "positive"),
    ("I love how easy the new app is to use.", "positive"),
    ("Your colleague was friendly and solved it quickly.", "positive"),
    ("The results are better than we expected.", "positive"),
    ("Perfect, I appreciate you calling me back.", "positive"),
    ("We're excited to start working with you.", "positive"),
    ("The delivery arrived early and everything was fine.", "positive"),
    ("It's not bad at all, actually quite good.", "positive"),
    ("I'm glad we sorted this out so fast.", "positive"),
    ("Finally, someone who knows what they're doing.", "positive"),
    ("The demo went smoothly and the client liked it.", "positive"),
    ("Awesome, thanks for the quick fix.", "positive"),
    ("I would definitely recommend you to my friends.", "positive"),
    ("Sales grew nicely this quarter.", "positive"),
    ("The meeting is scheduled for three o'clock on Tuesday.", "neutral"),
    ("Please send the invoice to the accounts department.", "neutral"),
    ("My order number starts with four and ends with seven.", "neutral"),
    ("We need to update the spreadsheet before Friday.", "neutral"),
    ("The office is on the second floor next to the lifts.", "neutral"),
    ("Can you tell me when the technician will arrive?", "neutral"),
    ("I'm calling about my account.", "neutral"),
    ("The report covers the first and second quarter.", "neutral"),
    ("Let me check that for you, one moment please.", "neutral"),
    ("The package weighs about two kilograms.", "neutral"),
    ("We moved the call to Thursday afternoon.", "neutral"),
    ("The form asks for your date of birth and address.", "neutral"),
    ("I'll forward the details by email.", "neutral"),
    ("The train leaves at eight fifteen from platform four.", "neutral"),
    ("Our contract renews every twelve months.", "neutral"),
    ("Press one for billing and two for support.", "neutral"),
    ("The software update installs overnight.", "neutral"),
    ("I read the document you sent yesterday.", "neutral"),
    ("This is the third time I've called and nobody has fixed it.", "negative"),
    ("I'm really disappointed with the service.", "negative"),
    ("The product broke after two days, this is unacceptable.", "negative"),
    ("I've been waiting on hold for forty minutes.", "negative"),
    ("Your website keeps crashing when I try to pay.", "negative"),
    ("I want to cancel my subscription, I'm fed up.", "negative"),
    ("The delivery was late and the box was damaged.", "negative"),
    ("Nobody answered my emails for two weeks.", "negative"),
    ("That's not helpful at all.", "negative"),
    ("I'm afraid we lost the client.", "negative"),
    ("The numbers this quarter are terrible.", "negative"),
    ("I was charged twice for the same order.", "negative"),
    ("Oh great, another outage, just what I needed.", "negative"),
    ("The new manager is rude and never listens.", "negative"),
    ("We missed the deadline again.", "negative"),
    ("Unfortunately your claim has been rejected.", "negative"),
    ("The sound quality on this call is awful.", "negative"),
    ("I don't think this will ever work.", "negative"),
]

# --------------------------------------------------------------------------- scoring

_DIGITS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}


def canonical(text: str) -> list[str]:
    """Canonical tokens of ``text`` (see the module docstring)."""
    text = text.lower().replace("@", " at ")
    text = re.sub(r"(?<=\w)\.(?=\w)", " dot ", text)
    out: list[str] = []
    for token in re.findall(r"[a-z]+|\d", text):
        out.append(_DIGITS.get(token, token))
    return out


@dataclass
class Counts:
    tp: int = 0  # personal words redacted
    fp: int = 0  # other words redacted
    fn: int = 0  # personal words left
    caught: int = 0  # entities with every word redacted
    present: int = 0  # entities with at least one word in the hypothesis
    dropped: int = 0  # entities ASR left out entirely

    def add(self, other: Counts) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    def entity_recall(self) -> float:
        return self.caught / self.present if self.present else 1.0


def score(reference: str, entities: list[tuple[str, str]], words: list[str], redacted: list[bool]) -> dict:
    """Counts overall and per entity type, for one utterance: ``words`` are the hypothesis words
    before redaction, ``redacted`` says which were replaced by a tag."""
    import jiwer

    # Reference tokens with their entity (index into ``entities``) or None.
    labels: list[int | None] = []
    ref_tokens: list[str] = []
    spans = []
    for n, (_, surface) in enumerate(entities):
        at = reference.index(surface)
        spans.append((at, at + len(surface), n))
    for match in re.finditer(r"\S+", reference):
        inside = next((n for a, b, n in spans if a <= match.start() < b), None)
        for token in canonical(match.group()):
            ref_tokens.append(token)
            labels.append(inside)
    hyp_tokens: list[str] = []
    owner: list[int] = []  # hypothesis token -> word index
    for w, word in enumerate(words):
        for token in canonical(word):
            hyp_tokens.append(token)
            owner.append(w)
    hyp_label: list[int | None] = [None] * len(hyp_tokens)
    if hyp_tokens and ref_tokens:
        out = jiwer.process_words(" ".join(ref_tokens), " ".join(hyp_tokens))
        for chunk in out.alignments[0]:
            if chunk.type in ("equal", "substitute"):
                for k in range(chunk.ref_end_idx - chunk.ref_start_idx):
                    hyp_label[chunk.hyp_start_idx + k] = labels[chunk.ref_start_idx + k]
            elif chunk.type == "insert":
                before = labels[chunk.ref_start_idx - 1] if chunk.ref_start_idx > 0 else None
                after = labels[chunk.ref_start_idx] if chunk.ref_start_idx < len(labels) else None
                if before is not None and before == after:  # an extra token inside an entity
                    for j in range(chunk.hyp_start_idx, chunk.hyp_end_idx):
                        hyp_label[j] = before
    word_entity: dict[int, set[int]] = {}
    for j, label in enumerate(hyp_label):
        if label is not None:
            word_entity.setdefault(owner[j], set()).add(label)
    total = Counts()
    by_type: dict[str, Counts] = {}
    missed: list[str] = []
    for w in range(len(words)):
        personal = w in word_entity
        if personal and redacted[w]:
            total.tp += 1
        elif personal:
            total.fn += 1
        elif redacted[w]:
            total.fp += 1
        for n in word_entity.get(w, ()):
            kind = by_type.setdefault(entities[n][0], Counts())
            kind.tp += redacted[w]
            kind.fn += not redacted[w]
    for n, (kind, _) in enumerate(entities):
        hit_words = [w for w, ents in word_entity.items() if n in ents]
        counts = by_type.setdefault(kind, Counts())
        if not hit_words:
            total.dropped += 1
            counts.dropped += 1
            continue
        caught = all(redacted[w] for w in hit_words)
        for c in (total, counts):
            c.present += 1
            c.caught += caught
        if not caught:
            missed.append(f"{kind} {' '.join(words[w].strip() for w in sorted(hit_words))!r}")
    return {"total": total, "types": by_type, "missed": missed}


def text_document(text: str) -> dict:
    """The reference text as a one-segment document, one word per space-separated token."""
    words = [{"word": " " + w, "start": float(i), "end": i + 1.0} for i, w in enumerate(text.split())]
    return {"text": text, "segments": [{"start": 0.0, "end": float(len(words)), "text": text, "words": words}]}


def doc_words(document: dict) -> list[str]:
    return [w["word"] for s in document["segments"] for w in s["words"]]


def tally(rows: list[dict]) -> tuple[Counts, dict[str, Counts]]:
    total, types = Counts(), {}
    for row in rows:
        total.add(row["total"])
        for kind, counts in row["types"].items():
            types.setdefault(kind, Counts()).add(counts)
    return total, types


def table(title: str, total: Counts, types: dict[str, Counts], rows: list[dict]) -> None:
    print(f"\n{title}\n")
    print("| type | entities | caught | entity recall | words redacted / personal | word recall |")
    print("|---|---|---|---|---|---|")
    for kind, c in sorted(types.items()):
        dropped = f" (+{c.dropped} dropped by ASR)" if c.dropped else ""
        print(
            f"| {kind} | {c.present}{dropped} | {c.caught} | {c.entity_recall():.3f} | "
            f"{c.tp} / {c.tp + c.fn} | {c.recall():.3f} |"
        )
    print(
        f"| **all** | {total.present} | {total.caught} | {total.entity_recall():.3f} | "
        f"{total.tp} / {total.tp + total.fn} | {total.recall():.3f} |"
    )
    print(
        f"\nword precision {total.precision():.3f} ({total.fp} words redacted that were not personal data), "
        f"word recall {total.recall():.3f}, entity recall {total.entity_recall():.3f}"
    )
    missed = [m for row in rows for m in row["missed"]]
    if missed:
        print("\nnot (wholly) redacted: " + "; ".join(missed))


# --------------------------------------------------------------------------- runs


def synthesize() -> list[Path]:
    CACHE.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, (text, _) in enumerate(UTTERANCES):
        path = CACHE / f"u{n:02d}.wav"
        marker = path.with_suffix(".txt")
        if not path.exists() or not marker.exists() or marker.read_text() != text:
            say(text, VOICES[n % 3], path)
            marker.write_text(text)
        paths.append(path)
    return paths


def text_only(entities: tuple[str, ...], thresholds: list[float]) -> None:
    from whisperless.engine import redact

    print("\n### Text only (the reference text, no ASR)")
    for threshold in thresholds:
        redact.SCORE_THRESHOLD = threshold
        rows = []
        for text, labelled in UTTERANCES:
            doc = text_document(text)
            before = doc_words(doc)
            redact.redact_document(doc, entities, language="en")
            rows.append(score(text, labelled, before, [bool(TAG.match(w)) for w in doc_words(doc)]))
        total, types = tally(rows)
        if threshold == thresholds[0]:
            table(f"score threshold {threshold}:", total, types, rows)
        else:
            print(
                f"\nscore threshold {threshold}: word precision {total.precision():.3f}, word recall "
                f"{total.recall():.3f}, entity recall {total.entity_recall():.3f}"
            )
    redact.SCORE_THRESHOLD = thresholds[0]


def through_speech(model: str, entities: tuple[str, ...], paths: list[Path], audio_check: bool) -> None:
    from whisperless.contract.options import TranscriptionOptions
    from whisperless.engine import Engine

    engine = Engine(whisper_model=model)
    options = TranscriptionOptions(
        language="en", redact=entities, redaction_output="redacted_and_unredacted", redact_audio=audio_check
    )
    engine.process(paths[0], options)  # load every model first
    rows, audible, entity_count = [], 0, 0
    transcribe_s = redact_s = seconds = 0.0
    samples = []
    for path, (text, labelled) in zip(paths, UTTERANCES, strict=True):
        result = engine.process(path, options)
        assert result.unredacted is not None
        before, after = doc_words(result.unredacted), doc_words(result.document)
        rows.append(score(text, labelled, before, [bool(TAG.match(w)) for w in after]))
        transcribe_s += result.document["timings"]["transcribe"]
        redact_s += result.document["timings"]["redact"]
        seconds += result.document["duration"]
        if len(samples) < 4 and labelled:
            samples.append((result.unredacted["text"], result.document["text"]))
        if audio_check and labelled and result.redacted_audio is not None:
            again = Path(CACHE / "redacted.wav")
            again.write_bytes(result.redacted_audio)
            heard = canonical(engine.run(again, TranscriptionOptions(language="en"))["text"])
            for _, surface in labelled:
                entity_count += 1
                audible += _audible(canonical(surface), heard)
    total, types = tally(rows)
    print(f"\n### Through speech: espeak-ng -> {model} -> redaction ({len(paths)} utterances, {seconds:.0f} s)")
    table(f"{model}, score threshold as shipped:", total, types, rows)
    print("\nexamples (unredacted -> redacted):\n")
    for plain, redacted_text in samples:
        print(f"- {plain}\n  -> {redacted_text}")
    print(
        f"\nper utterance: transcribe {transcribe_s / seconds * 60:.2f} s and redact {redact_s / seconds * 60:.2f} s "
        f"per audio minute (sum over utterances)"
    )
    if audio_check:
        print(
            f"\nredacted audio re-transcribed by {model}: {audible} of {entity_count} entities still recognisable "
            "(3 consecutive tokens of a number or e-mail, or any name token of 3+ letters)"
        )


def _audible(entity: list[str], heard: list[str]) -> bool:
    words = [t for t in entity if len(t) >= 3 and not t.isdigit() and t not in ("dot", "at")]
    if words and not any(t.isdigit() for t in entity):  # a name or a place
        return any(t in heard for t in words)
    run = 3
    grams = {tuple(entity[i : i + run]) for i in range(len(entity) - run + 1)}
    return any(tuple(heard[i : i + run]) in grams for i in range(len(heard) - run + 1))


def cost(model: str, entities: tuple[str, ...], paths: list[Path], repeat: int) -> None:
    """One long file of every utterance back to back: transcribed once (timed), then its document
    redacted and scored for sentiment ``repeat`` times (redaction's cost depends on the text, not
    on how it was transcribed)."""
    import copy

    import numpy as np

    from whisperless.contract.options import TranscriptionOptions
    from whisperless.engine import Engine
    from whisperless.engine.audio import decode_audio
    from whisperless.engine.redact import load_analyzer, redact_document
    from whisperless.engine.sentiment import add_sentiment, load_vader

    gap = np.zeros(8000, dtype=np.float32)
    audio = np.concatenate([part for path in paths for part in (decode_audio(path), gap)])
    minutes = audio.size / 16000 / 60
    engine = Engine(whisper_model=model)
    document = engine.process(audio, TranscriptionOptions(language="en")).document
    transcribe = document["timings"]["transcribe"]
    load_vader()
    load_analyzer()
    redact_s, sentiment_s = [], []
    for _ in range(repeat):
        doc = copy.deepcopy(document)
        started = time.perf_counter()
        add_sentiment(doc, language="en")
        sentiment_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        redact_document(doc, entities, language="en")
        redact_s.append(time.perf_counter() - started)
    redact, sentiment = statistics.median(redact_s), statistics.median(sentiment_s)
    words = sum(len(s["words"]) for s in document["segments"])
    print(f"\n### Cost: all utterances as one {minutes:.2f} min file ({words} words), {model}\n")
    print("| step | seconds | per audio minute | against transcription |")
    print("|---|---|---|---|")
    print(f"| transcription (once) | {transcribe:.2f} | {transcribe / minutes:.2f} | 1 |")
    print(f"| redaction (median of {repeat}) | {redact:.3f} | {redact / minutes:.3f} | {redact / transcribe:.1%} |")
    share = sentiment / transcribe
    print(f"| sentiment (median of {repeat}) | {sentiment:.4f} | {sentiment / minutes:.4f} | {share:.2%} |")
    load_analyzer.cache_clear()
    started = time.perf_counter()
    load_analyzer()
    print(
        "\nloading the analyzer again in a warm process (spaCy model + recognisers): "
        f"{time.perf_counter() - started:.2f} s"
    )


def vader() -> None:
    from whisperless.engine.sentiment import label, score_text

    labels = ("positive", "neutral", "negative")
    confusion: Counter = Counter()
    wrong = []
    for sentence, truth in SENTIMENT:
        guess = label(score_text(sentence))
        confusion[truth, guess] += 1
        if guess != truth:
            wrong.append((sentence, truth, guess, score_text(sentence)))
    right = sum(confusion[x, x] for x in labels)
    print(f"\n### VADER on {len(SENTIMENT)} labelled sentences: accuracy {right / len(SENTIMENT):.3f}\n")
    print("| truth \\ VADER | " + " | ".join(labels) + " | recall |")
    print("|---|---|---|---|---|")
    f1s = []
    for truth in labels:
        row = [confusion[truth, guess] for guess in labels]
        recall = confusion[truth, truth] / sum(row)
        predicted = sum(confusion[t, truth] for t in labels)
        precision = confusion[truth, truth] / predicted if predicted else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
        print(f"| {truth} | " + " | ".join(map(str, row)) + f" | {recall:.2f} |")
    print(f"\nmacro F1 {statistics.mean(f1s):.3f}; wrong:")
    for sentence, truth, guess, value in wrong:
        print(f"- {sentence!r}: {truth}, VADER {guess} ({value:+.3f})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", action="append", help="tiny.en, base, ... (repeatable; default tiny.en)")
    parser.add_argument("--entities", default="pii")
    parser.add_argument(
        "--thresholds", default="0.3,0.0,0.5,0.7", help="text-only sweep; the first is reported in full"
    )
    parser.add_argument("--audio-check", action="store_true", help="re-transcribe the redacted audio")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-speech", action="store_true")
    parser.add_argument("--cost-only", action="store_true", help="skip the precision/recall pass through speech")
    args = parser.parse_args()
    from whisperless.contract.redaction import parse_entities

    entities = parse_entities(args.entities)
    print(f"command: {' '.join(sys.argv)}")
    personal = sum(len(e) for _, e in UTTERANCES)
    print(
        f"set: {len(UTTERANCES)} utterances, {personal} labelled entities, "
        f"{sum(not e for _, e in UTTERANCES)} without any"
    )
    text_only(entities, [float(t) for t in args.thresholds.split(",")])
    vader()
    if args.skip_speech:
        return
    paths = synthesize()
    for model in args.model or ["tiny.en"]:
        if not args.cost_only:
            through_speech(model, entities, paths, args.audio_check)
        cost(model, entities, paths, args.repeat)


if __name__ == "__main__":
    main()
