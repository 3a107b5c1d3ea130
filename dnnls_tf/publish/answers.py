"""The paper's written answers as Markdown, for the notebooks: one text, checked once, shown in both places.

Each answer paragraph of report/main.tex ("\\paragraph{Answer to Q<n>.}") is hand-written prose whose
numbers are result macros and whose statements are checked claims (publish/claims.py). A notebook shows
the same paragraph with this profile's numbers put in; a claim that does not hold on this profile is
marked, as the paper marks it, so that no notebook states what its numbers do not support.
"""
from __future__ import annotations

import re

from dnnls_tf.errors import UserError
from dnnls_tf.publish import claims, report

FLAG = "⚠"  # a claim that does not hold on this profile (the paper's margin flag)
# LaTeX the paper's prose uses, as plain text (the rest of the macros are the report's generated ones)
SIMPLE = ((r"$\to$", "→"), (r"\pp{}", " pp"), (r"\pp", " pp"), (r"\%", "%"), ("~", " "), ("---", "—"), ("--", "–"),
          (r"\|", "‖"), (r"\mathbb{E}", "E"), (r"\,", " "), ("``", "“"), ("''", "”"), ("{}", ""))


def paragraph_of(text: str, heading: str) -> str:
    """The LaTeX of the paper's paragraph headed `heading` (up to the next paragraph, section or figure)."""
    start = text.find(f"\\paragraph{{{heading}}}")
    if start < 0:
        raise UserError(f"report/main.tex has no paragraph {heading!r}")
    body = text[start + len(f"\\paragraph{{{heading}}}"):]
    end = re.search(r"\\(paragraph|section|subsection|begin\{figure|ifDataScaleRan|input)", body)
    return body[:end.start()] if end else body


def answer_paragraph(text: str, number: int) -> str:
    """The LaTeX of the body's answer to question `number`."""
    return paragraph_of(text, f"Answer to Q{number}.")


def _macro_values(study, summaries: dict) -> dict[str, str]:
    setup = report.setup_macros(study, summaries).values
    claimed = report.claim_macros(summaries).values
    return {**setup, **claimed}


def to_markdown(latex: str, values: dict, statuses: dict, macros: dict) -> str:
    """The paper's prose as Markdown: numbers put in, claims kept (marked where they do not hold), the
    question quoted, citations and cross-references dropped."""
    def claim(match):
        name, text = match.group(1), match.group(3)
        return f"{FLAG} *{text}* {FLAG}" if statuses.get(name) is False else text

    text = re.sub(r"\\claim\{([^{}]+)\}\{([^{}]*)\}\{((?:[^{}]|\{[^{}]*\})*)\}", claim, latex)
    text = re.sub(r"\\R\{([^{}]+)\}", lambda m: values[m.group(1)].text if m.group(1) in values else "n/a", text)
    text = re.sub(r"\\question\{\\([A-Za-z]+)\}", lambda m: f"\n\n> *{_plain(macros.get(m.group(1), ''))}*\n\n", text)
    text = re.sub(r"\s*\((?:[^()]*\\ref\{[^}]*\}[^()]*)\)", "", text)  # "(Figure~\ref{...})"
    text = re.sub(r"\\(citep|citet|citealt)\{([^}]*)\}", lambda m: citation(m.group(1), m.group(2)), text)
    text = re.sub(r"\\ref\{[^}]*\}", "", text)
    text = re.sub(r"\\layer\{([^}]*)\}", r"`\1`", text)
    text = re.sub(r"\\emph\{([^}]*)\}", r"*\1*", text)
    text = re.sub(r"\\([A-Z][A-Za-z]+)(\{\})?", lambda m: _plain(macros.get(m.group(1), m.group(0))), text)
    for latex_text, plain in SIMPLE:
        text = text.replace(latex_text, plain)
    text = text.replace("$", "")
    paragraphs = [" ".join(part.split()) for part in re.split(r"\n\s*\n", text)]
    return "\n\n".join(part for part in paragraphs if part)


def _authors_year(key: str) -> tuple[str, str]:
    """("Yosinski et al.", "2014") for a key of report/references.bib (the key itself when absent)."""
    bib = (report.SOURCE_DIR / "references.bib").read_text()
    entry = re.search(r"@\w+\{" + re.escape(key) + r",(.*?)\n\}", bib, re.S)
    if entry is None:
        return key, ""
    author = re.search(r"author\s*=\s*\{(.*?)\},?\s*\n", entry.group(1), re.S)
    year = re.search(r"year\s*=\s*\{?(\d{4})", entry.group(1))
    names = [name.strip() for name in (author.group(1) if author else key).split(" and ")]
    surnames = [name.split(",")[0].strip().strip("{}") if "," in name else name.split()[-1] for name in names]
    who = (surnames[0] if len(surnames) == 1 else f"{surnames[0]} and {surnames[1]}" if len(surnames) == 2
           else f"{surnames[0]} et al.")
    return who, year.group(1) if year else ""


def citation(kind: str, keys: str) -> str:
    """\\citet{k} -> "Yosinski et al. (2014)", \\citep{k1,k2} -> "(Smith, 2017; Goyal et al., 2017)"."""
    cited = [_authors_year(key.strip()) for key in keys.split(",")]
    if kind == "citet":
        return "; ".join(f"{who} ({year})" for who, year in cited)
    inner = "; ".join(f"{who}, {year}" for who, year in cited)
    return inner if kind == "citealt" else f"({inner})"


def _plain(latex: str) -> str:
    """A generated macro's value (LaTeX-escaped plain text) back as plain text."""
    text = re.sub(r"\\ensuremath\{([^{}]*)\}", r"\1", latex)
    for escaped, plain in ((r"\%", "%"), (r"\_", "_"), (r"\&", "&"), (r"\#", "#"), ("{,}", ","), (r"\pm", "±"),
                           ("-", "-")):
        text = text.replace(escaped, plain)
    return text.replace("\\textendash{}", "–").replace("{}", "")


def _waiting_for(study) -> str:
    """"" when every summary the paper reads is in the store, else one Markdown line naming those missing
    (a notebook run before the experiments it quotes: the paper's text needs all of them)."""
    from dnnls_tf.experiments import REGISTRY
    from dnnls_tf.study.results import summary_path

    missing = [entry.name for entry in REGISTRY if entry.sentences and entry.question
               and not summary_path(study.results_dir, entry.name).is_file()]
    if not missing:
        return ""
    commands = ", ".join(f"`python -m dnnls_tf run {name} --profile {study.profile}`" for name in missing)
    return (f"The paper's text quotes every experiment; {', '.join(missing)} {'have' if len(missing) > 1 else 'has'} no summary on the "
            f"{study.profile} profile yet ({commands}, or its notebook, writes it).")


def paper_paragraphs(study, *headings: str) -> str:
    """The paper's paragraphs headed `headings` (e.g. "Batch normalisation." of the Discussion) as Markdown,
    each headed in bold, with this profile's numbers and any claim that does not hold here marked."""
    if _waiting_for(study):
        return _waiting_for(study)
    summaries = report.load_summaries(study)
    source = claims.without_comments((report.SOURCE_DIR / "main.tex").read_text())
    values = claims.result_values(summaries)
    statuses = {s.name: s.holds for s in claims.check_claims({"main.tex": source}, summaries, values)}
    macros = _macro_values(study, summaries)
    return "\n\n".join(f"**{heading}** " + to_markdown(paragraph_of(source, heading), values, statuses, macros)
                        for heading in headings)


def paper_answer(study, experiment: str) -> str:
    """The paper's answer to the question of `experiment` (exp1 -> Q1 ...), as Markdown, with this profile's
    numbers and with any claim that does not hold here marked."""
    if _waiting_for(study):
        return _waiting_for(study)
    summaries = report.load_summaries(study)
    number = int(experiment.removeprefix("exp"))
    source = claims.without_comments((report.SOURCE_DIR / "main.tex").read_text())
    values = claims.result_values(summaries)
    statuses = {s.name: s.holds for s in claims.check_claims({"main.tex": source}, summaries, values)}
    return to_markdown(answer_paragraph(source, number), values, statuses, _macro_values(study, summaries))
