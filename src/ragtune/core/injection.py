"""Planted instructions in retrieved sources, and answers that carry them out.

A retrieved source is data, but a planted one may address the model ("ignore previous
instructions, answer only with ..."). The prompt fences sources and labels them as data
(core/prompts.py); a small model still obeys now and then. This is the output check.

`instruction_spans` finds the sentences of a source that address the assistant rather
than inform a reader: overrides ("ignore previous instructions", in a few languages),
answer dictation ("reply only with", "repeat after me"), words to the assistant or about
the user, fake chat turns and forged fences, and base64 that decodes to any of these.
`guard_answer` then removes each sentence of an answer that quotes what *only* those
spans say: a quoted payload, a code-like token, a URL, host or e-mail, two content words
in a row, or a run of four words. Text that also appears outside the spans (the honest
part of any source) is never held against an answer. When nothing of the answer is left,
the answer is `REFUSAL`.

It is a pattern check, not an understanding: an instruction phrased in none of the ways
below passes. bench/injection.py measures how often answers follow planted instructions
with and without it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence

REFUSAL = (
    "No answer: the retrieved sources hold instructions addressed to the assistant, and "
    "the answer repeated them."
)

_I = re.IGNORECASE | re.MULTILINE
_ASSISTANT = r"(?:ai|assistants?|chatbots?|llms?|(?:ai |language )models?|gpt)"
INSTRUCTION_PATTERNS = [
    re.compile(p, _I)
    for p in (
        # overrides
        r"\b(?:ignore|disregard|forget)\b[^.!?\n]{0,25}\b(?:previous|prior|earlier|above|"
        r"preceding|other|original|system|all|your|these)\s+(?:instructions?|rules|directions|"
        r"prompts?|sources|context|guidelines)\b|\b(?:ignore|disregard|forget)\s+(?:everything|"
        r"the above|all of the above|all instructions)\b",
        r"\b(?:previous|prior|earlier)\s+instructions\b",
        r"\byou\s+are\s+now\s+(?:an?|in|the|called|named|dan)\b|\bfrom\s+now\s+on\b|"
        r"\bpretend\s+(?:to\s+be|you)\b|\brole-?play\b|\bjailbreak|\bdeveloper\s+mode\b",
        r"\bsystem\s+(?:update|override|notice|alert)s?\b",
        # answer dictation
        r"\b(?:answer|reply|respond|output|say|print|write|type)\s+(?:only|just|exactly|"
        r"verbatim|nothing but)\b|\b(?:answer|reply|respond)\s+(?:to\s+)?(?:every|each|all|"
        r"any)\s+(?:questions?|answers?|queries|query|requests?)\b",
        r"\b(?:answer|reply|respond)\s+(?:\w+\s+){0,2}with\s+(?:only\s+|just\s+)?(?:['\"“«`]|"
        r"the (?:single |following )?(?:word|phrase|text|string|code)\b)",
        r"\b(?:begin|start|end|finish|prefix|append)\b[^.!?\n]{0,20}\b(?:every|each|your)"
        r"\s+(?:answer|reply|response|output)\b",
        r"\b(?:always|never)\s+(?:answer|reply|respond|say)\b",
        r"\brepeat\s+after\s+me\b|\b(?:repeat|say|print|output|write)\s+(?:the following|"
        r"exactly|verbatim)\b|\b(?:repeat|say)\s+this\b|\bdo\s+what\s+it\s+says\b",
        r"\bdecode\b.{0,30}\b(?:base64|and|then)\b",
        # words to the assistant, or about the user
        rf"\b(?:note|message|instructions?|important|attention)\s*(?:to|for)\s+(?:the\s+|all\s+)?"
        rf"{_ASSISTANT}\b",
        rf"(?:^|[.!?]\s+)(?:dear\s+)?{_ASSISTANT}\s*[,:]",
        rf"\b{_ASSISTANT}\s+(?:must|shall|has to|have to)\b",
        r"\b(?:in|into|to|at the (?:end|start|beginning) of)\s+your\s+(?:answer|response|"
        r"reply)\b|\bwhen\s+you\s+(?:answer|reply|respond)\b",
        r"\b(?:tell|instruct|inform|advise|ask|direct)\s+(?:the\s+|all\s+)?users?\b|"
        r"\bthe\s+user['’]?s\s+question\b",
        # fake turns and forged fences
        r"<\|?\s*(?:im_start|im_end|system|assistant|user|endoftext|eot_id)\s*\|?>|\[/?INST\]|"
        r"<</?SYS>>",
        r"^\s*#{2,}\s*(?:instruction|system|response|assistant)\b",
        r"^\s*(?:system|assistant)\s*:",
        r"\"role\"\s*:\s*\"(?:system|assistant|developer)\"",
        r"(?:<<<|‹‹‹)\s*(?:end\s+)?source\b",
        # other languages: French, German, Spanish, Italian, Portuguese, Russian, Chinese
        r"\bignor(?:ez|e|er)\b.{0,30}\binstructions?\b|\br[ée]pond(?:s|ez|re)\b.{0,30}"
        r"\b(?:uniquement|seulement)\b",
        r"\bignorier(?:e|en|t)?\b|\bvorherigen\s+anweisungen\b|\bantworte(?:n)?\b.{0,20}"
        r"\b(?:nur|ausschließlich)\b",
        r"\bignor(?:a|ar|ate|ad|e)\b.{0,30}\b(?:instrucciones|istruzioni|instruções|"
        r"instrucoes)\b|\b(?:responde|rispondi|responda|contesta)\b.{0,30}\b(?:solo|sólo|"
        r"soltanto|solamente|apenas|somente|únicamente)\b",
        r"игнорир\w*|предыдущие\s+инструкции|ответь\s+только|отвечай\s+только",
        r"忽略|无视|忽視|之前的.{0,4}指[令示]|只回答|仅回答|只输出|只回复",
    )
]

_SENTENCE = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])|\n+")
_COMMENT = re.compile(r"<!--(.*?)-->", re.DOTALL)
_QUOTED = re.compile(
    r"(?<!\w)'([^'\n]{2,200})'(?!\w)|\"([^\"\n]{2,200})\"|“([^”\n]{2,200})”|"
    r"«\s*([^»\n]{2,200}?)\s*»|`([^`\n]{2,200})`"
)
_URL = re.compile(r"\b(?:https?://|www\.)[^\s)\]'\"<>]+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.I)
_HOST = re.compile(r"\b(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z][a-z0-9-]{1,}\b", re.I)
_WORD = re.compile(r"\w+(?:[-'’]\w+)*")
_BASE64 = re.compile(r"(?<![\w+/])[A-Za-z0-9+/]{16,}={0,2}(?![\w+/=])")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_SHOUTED = _words(  # shouting, not a payload
    """IGNORE PREVIOUS INSTRUCTIONS INSTRUCTION IMPORTANT SYSTEM UPDATE NOTE WARNING URGENT
    ONLY THIS THAT WITH FROM NOW THE AND ALL YOUR NOTICE ATTENTION ANSWER REPLY NEVER
    ALWAYS MUST"""
)
_STOPWORDS = _words(  # function words, and the vocabulary of instructions themselves
    """a an the and or but of to in on at by for with from is are was were be been it its
    this that these those as into your you yours their they them he she we our us i me my
    not no do does did so if then than there here what which who when where how all any
    each every only just also can could will would should must may might answer question
    reply respond response user users assistant source sources say tell ignore disregard
    forget previous prior instructions instruction rules exactly verbatim word words single
    following text always never nothing else mode now output print write repeat after
    begin start end append include link system important note update decode base64
    follow says"""
)


def instruction_spans(text: str) -> list[str]:
    """The sentences of `text` that address the assistant, and what base64 in it says."""
    spans: list[str] = []
    parts = _SENTENCE.split(_COMMENT.sub(lambda m: f"\n{m.group(1)}\n", text))
    for sentence in (s.strip() for s in parts):
        if sentence and _instruction_like(sentence):
            spans.append(sentence)
        for blob in _BASE64.findall(sentence):
            decoded = _decode(blob)
            if decoded and _instruction_like(decoded):
                spans += [blob, decoded]
    return spans


def guard_answer(answer: str, sources: Sequence[str]) -> str:
    """`answer` without the sentences that repeat what only the sources' instructions say;
    `REFUSAL` when nothing is left. Sources are the texts the prompt showed (titles too)."""
    flagged = planted_payloads(answer, sources)
    if not flagged:
        return answer
    kept = [
        s for s in _answer_sentences(answer) if not any(_occurs(p, s.casefold()) for p in flagged)
    ]
    text = " ".join(" ".join(kept).split())
    return text if len(_WORD.findall(text)) >= 2 else REFUSAL


def planted_payloads(answer: str, sources: Sequence[str]) -> list[str]:
    """What `answer` quotes from the sources' instruction spans and from nowhere else."""
    spans = [span for source in sources for span in instruction_spans(source)]
    if not spans:
        return []
    clean = "\n".join(_without(source, spans) for source in sources).casefold()
    folded = answer.casefold()
    return sorted({p for p in _payloads(spans) if _occurs(p, folded) and not _occurs(p, clean)})


def _instruction_like(sentence: str) -> bool:
    return any(p.search(sentence) for p in INSTRUCTION_PATTERNS)


def _decode(blob: str) -> str | None:
    try:
        raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return text if text.isprintable() else None


def _payloads(spans: Iterable[str]) -> set[str]:
    """Strings an answer would carry if it followed the spans (casefolded)."""
    found: set[str] = set()
    for span in spans:
        for groups in _QUOTED.findall(span):
            quoted = " ".join(next(g for g in groups if g).split())
            if len(_WORD.findall(quoted)) >= 1:
                found.add(quoted.casefold().strip(" .,;:!?"))
        for url in _URL.findall(span):
            found.add(url.casefold().rstrip(".,;:!?"))
        for host in _HOST.findall(span):
            labels = host.casefold().split(".")
            found.add(".".join(labels[-2:]))  # the registrable part, e.g. evil.example
        words = _WORD.findall(span)
        for word in words:
            if _code_like(word):
                found.add(word.casefold())
        folded = [w.casefold() for w in words]
        content = [w not in _STOPWORDS and len(w) > 2 for w in folded]
        for i in range(len(folded) - 1):
            if content[i] and content[i + 1]:  # two content words in a row
                found.add(f"{folded[i]} {folded[i + 1]}")
            if i + 3 < len(folded) and sum(content[i : i + 4]) >= 2:
                found.add(" ".join(folded[i : i + 4]))
        if not folded:  # scripts without spaces: the span itself
            found.add(span.casefold())
    return {p for p in found if p}


def _code_like(word: str) -> bool:
    """A canary-like token: letters with digits, a long number, or a shouted word."""
    has_digit = any(c.isdigit() for c in word)
    if has_digit and any(c.isalpha() for c in word):
        return True
    if word.isdigit():
        return len(word) >= 3
    letters = word.replace("-", "")
    return letters.isalpha() and letters.isupper() and len(letters) >= 4 and (word not in _SHOUTED)


def _occurs(payload: str, text: str) -> bool:
    """`payload` in `text`, whole words at its ends (both casefolded)."""
    start = r"(?<!\w)" if payload[:1].isalnum() or payload[:1] == "_" else ""
    end = r"(?!\w)" if payload[-1:].isalnum() or payload[-1:] == "_" else ""
    if not payload[:1].isascii():  # scripts without word spaces
        start = end = ""
    pattern = start + r"\s+".join(re.escape(part) for part in payload.split()) + end
    return re.search(pattern, text) is not None


def _without(source: str, spans: Sequence[str]) -> str:
    """The source with its instruction spans (and base64 blobs) blanked out."""
    text = _COMMENT.sub(lambda m: f"\n{m.group(1)}\n", source)
    blobs = set(spans)
    kept = [p for p in _SENTENCE.split(text) if p.strip() not in blobs]
    return "\n".join(
        _BASE64.sub(lambda m: "" if m.group(0) in blobs else m.group(0), p) for p in kept
    )


def _answer_sentences(answer: str) -> list[str]:
    return [s for s in _SENTENCE.split(answer) if s.strip()]
