"""Experiment 4 in words: its groups' labels and nouns, and every sentence its summary supports. Whether a
conclusion of experiments 1-3 holds at the largest size is said where both summaries are read
(`replication_rows`, used by the report and the notebooks)."""
from __future__ import annotations

from dnnls_tf.present.sentences import Phrasing, plateau_sentence, verdict
from dnnls_tf.present.tables import format_rate, format_value

MODEL_WORDS = {"constant": "the constant rate", "dropout": "the best dropout", "batch_norm": "batch norm at its rate",
               "schedule": "the schedule", "source": "end to end on half A", "transfer": "transfer to half B"}


def label(key, summary=None) -> str:
    """A group in a table or legend: ("dropout", 2500) -> "best dropout, 2,500 images"."""
    kind, size = key[0], key[1] if len(key) > 1 else None
    words = MODEL_WORDS.get(kind, kind).removeprefix("the ")
    return f"{words}, {size:,} images" if size is not None else words


def noun(key) -> str:
    kind, size = key[0], key[1] if len(key) > 1 else None
    return f"{MODEL_WORDS.get(kind, kind)} on {size:,} images" if size is not None else MODEL_WORDS.get(kind, kind)


def curve_sentence(summary) -> str:
    """Test accuracy and the train-minus-validation gap against training-set size, per model."""
    parts = []
    for model in ("constant", "dropout", "batch_norm"):
        points = [g for g in summary.groups if g.kind == model]
        points.sort(key=lambda g: g.value)
        if not points:
            continue
        accuracy = " → ".join(format_value(g.mean("test_accuracy"), "test_accuracy") for g in points)
        gap = " → ".join(format_value(g.mean("generalization_gap"), "generalization_gap") for g in points)
        parts.append(f"{MODEL_WORDS[model]}: test accuracy {accuracy} %, train-minus-validation gap {gap} pp")
    sizes = " → ".join(f"{s:,}" for s in summary.sizes)
    return f"From {sizes} training images ({summary.source}), " + "; ".join(parts) + "."


def sentences(summary) -> dict[str, str]:
    if summary.skipped:
        return {"skipped": f"Experiment 4 did not run here: {summary.skipped}.", "answer": ""}
    say, claims = Phrasing(summary, noun), {}
    claims["data"] = (f"Experiment 4 trains on {summary.source}: the best constant rate "
                      f"{format_rate(summary.learning_rate)}, dropout {format_rate(summary.best_dropout)} and batch "
                      f"norm at {format_rate(summary.bn_rate)} were chosen by experiments 1 to 3 on the smaller data "
                      f"and are reused here, not chosen again.")
    claims["curve"] = curve_sentence(summary)
    claims["plateau"] = plateau_sentence(summary, label)
    for entry in summary.comparisons:
        claims[f"{entry.name}_{entry.metric}"] = say.effect(entry)
    claims["family"] = say.family(label)
    claims["answer"] = " ".join(text for text in (claims["data"], claims["curve"], claims["plateau"]) if text)
    return claims


def replication_rows(summaries: dict) -> list[dict]:
    """Per replicated comparison: the verdict on the subset (experiments 1-3) and at the largest size
    (experiment 4), and whether the conclusion holds (the same significant direction, or both not
    significant)."""
    exp4 = summaries.get("exp4")
    if exp4 is None or exp4.skipped:
        return []
    rows = []
    for link in exp4.replicates:
        small = summaries[link.experiment]
        try:
            before = small.comparison(link.of, link.metric, link.first)
        except KeyError:
            continue
        after = exp4.comparison(link.name, link.metric)
        v_before, v_after = verdict(before), verdict(after)
        holds = (v_before.direction == v_after.direction and v_before.testable and v_after.testable)
        rows.append({"comparison": link.name, "metric": link.metric, "before": before, "after": after,
                     "holds": holds, "direction_before": v_before.direction, "direction_after": v_after.direction})
    return rows


def replication_sentence(summaries: dict) -> str:
    """Which conclusions of experiments 1-3 hold at ten times the data."""
    rows = replication_rows(summaries)
    if not rows:
        return ""
    words = {1: "significantly up", -1: "significantly down", 0: "not significant"}
    held = [r for r in rows if r["holds"]]
    text = (f"Of the {len(rows)} comparisons repeated at the largest size, {len(held)} keep their verdict: "
            + "; ".join(f"{r['comparison'].replace('_', ' ')} on {r['metric'].replace('_', ' ')}: "
                        f"{words[r['direction_before']]} on the subset, {words[r['direction_after']]} at scale "
                        f"({format_value(r['before'].difference, r['metric'], signed=True)} → "
                        f"{format_value(r['after'].difference, r['metric'], signed=True)} pp)" for r in rows))
    return text + "."

