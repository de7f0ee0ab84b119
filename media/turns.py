"""When a pause ends a turn early: the text so far must read as a finished sentence.

The segmenter ends an utterance after `silence_ms` (300 ms) without speech. Most turns are
over well before that: when a pause reaches `endpoint_silence_ms` (180 ms) the segmenter
sends an `endpoint` snapshot, and the transcriber decodes it as a final. If its text reads
as a finished sentence and the speaker has not gone on while it was decoded, that text is
the final transcript at once and the rest of the pause is not waited for. A speaker who
goes on later (within the 300 ms) starts a new segment where the first one ended: the
utterance is split after a finished sentence, and nothing is transcribed twice.

Measured on the speech fixtures, one call in real time (docs/benchmarks.md): at 180 ms the
word error rate is unchanged, no utterance is split that the full pause did not split, and
end of speech → final p50 drops by ~100 ms. At 120 ms the closure before a final stop
consonant ("stopped", "arrived") already reads as a pause: "It arrived. | Broken." was cut
mid-sentence.

Whisper punctuates what it hears, and a sentence cut off by a pause often comes back with
a full stop anyway ("I want to." for "I want to... cancel"), so punctuation alone is not
enough: text ending on a word that cannot end an English sentence (a conjunction, an
article, a preposition, a possessive, an auxiliary) or on a number (order and phone
numbers are read out in groups, with pauses between them) is not finished. A comma, a
colon, a dash or an ellipsis is not an end either. Nor is a single word: "Yes, that is
correct." and "Hi, I want a refund" pause after their first word, which Whisper then
ends with a full stop; waiting the full pause after a one-word turn costs ~180 ms.
"""

from __future__ import annotations

import re

_END = re.compile(r"[.?!][\"')\]]*$")
_ELLIPSIS = re.compile(r"(\.\.|…)[\"')\]]*$")
_LAST_WORD = re.compile(r"([\w']+)\W*$")

CONTINUING_WORDS = frozenset(
    """
    a an the and or but nor so because since as if than that which who whom whose when
    while whereas although though unless until till where whether
    to of in on at by for from with without into onto about above after before behind
    below between over under through during per via like near toward towards upon
    my your his her its our their this these those some any each every no
    i i'm i've i'd i'll we he she they
    is am are was were be been being do does did have has had will would shall should
    can could may might must not
    uh um er erm hmm mm
    """.split()  # noqa: SIM905 - a word list reads better as text
)
"""Words that leave an English sentence open. Object pronouns end many ("Thank you.", "I
returned it."), and so are not here; a word missing here costs only the full pause."""


def reads_finished(text: str) -> bool:
    """Whether `text` reads as a finished sentence of two words or more."""
    text = text.strip()
    if not _END.search(text) or _ELLIPSIS.search(text):
        return False
    match = _LAST_WORD.search(text)
    if match is None or len(text.split()) < 2:
        return False
    word = match.group(1).lower()
    if word[-1].isdigit():
        return False
    return word not in CONTINUING_WORDS
