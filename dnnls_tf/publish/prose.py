"""Two marks of machine-made prose, found in generated text (the paper's LaTeX, the notebooks' outputs).

- a hedged plural, "epoch(s)", "point(s)": the writer did not know the count; the code does, and says
  "1 epoch" or "3 epochs";
- one sentence form three times in a row, "The schedule and constant rate 0.00848 show no significant
  difference in test accuracy ... in the gap ... in the train-minus-test gap": sentences that differ only
  in their numbers and a word or two, which a person would have written as one sentence.

Two sentences share a form when their words, numbers replaced by one token, match for at least
`SAME_FORM` of their length (difflib's ratio). Only text is judged: LaTeX commands, Markdown marks and
table rows are stripped or skipped first.
"""
from __future__ import annotations

import difflib
import re

HEDGED_PLURAL = re.compile(r"[A-Za-z]\(s\)|[A-Za-z]\(es\)")
SAME_FORM = 0.75
MIN_WORDS = 6   # words, numbers not counted: shorter sentences ("Without dropout:") and table rows are no form
NUMBER = re.compile(r"[−+-]?\d[\d,.]*(?:e[−+-]?\d+)?")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"“*])|\n\s*\n|\n\s*[-*•]\s+")


def hedged_plurals(text: str) -> list[str]:
    """Every "word(s)" of `text`, with a little context."""
    return [text[max(0, m.start() - 20):m.end() + 10] for m in HEDGED_PLURAL.finditer(text)]


def plain_text(latex: str) -> str:
    """LaTeX as the words a reader sees (roughly): comments, commands and braces removed, table rows
    (lines with &) dropped."""
    lines = [re.sub(r"(?<!\\)%.*", "", line) for line in latex.splitlines() if "&" not in line]
    text = "\n".join(lines)
    text = re.sub(r"\\(?:label|ref|cite[pt]?|citealt|input|includegraphics|studyfigure|begin|end)\{[^}]*\}", " ", text)
    text = re.sub(r"\\[A-Za-z@]+\*?", " ", text)
    return re.sub(r"[{}$~]", " ", text)


def sentences(text: str) -> list[str]:
    """`text` split into sentences (and list items, and paragraphs), whitespace collapsed."""
    parts = (" ".join(part.split()) for part in SENTENCE_END.split(text))
    return [part for part in parts if part]


def _form(sentence: str) -> list[str]:
    return [("#" if NUMBER.fullmatch(word) else word.lower()) for word in
            re.findall(r"[−+-]?\d[\d,.]*|[A-Za-z]+(?:[-'][A-Za-z]+)*", sentence)]


def repeated_forms(text: str, times: int = 3) -> list[str]:
    """Runs of `times` consecutive sentences of one form (see the module's docstring), each given as its
    first sentence."""
    found, parts = [], sentences(text)
    forms = [_form(part) for part in parts]
    for start in range(len(parts) - times + 1):
        window = forms[start:start + times]
        if any(sum(word != "#" for word in words) < MIN_WORDS for words in window):  # a table row is no sentence
            continue
        if all(difflib.SequenceMatcher(None, window[i], window[i + 1], autojunk=False).ratio() >= SAME_FORM
               for i in range(times - 1)):
            found.append(parts[start])
    return found
