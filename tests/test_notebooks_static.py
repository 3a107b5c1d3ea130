"""The notebooks' text cells hold no results: every number a reader sees is printed by a cell.

The rule (issue 17: "no hand-typed decimal in any notebook markdown cell"), applied to every
markdown cell of the three notebooks after link targets (URLs) are removed. A cell fails on:

- a decimal fraction: a digit, a point or comma and a digit ("0.5", "12.3", "0,5"), or a point
  and a digit not preceded by a word character or a point (".5"; "1..5" is a range);
- scientific notation: "1e-3", "4.5e−02", "2E+1";
- a thousands separator ("5,085") or any number of three or more digits ("2023", "124"):
  sizes, steps and seeds change with the profile and are printed by the banner and tables;
- any number followed by a percent sign or "pp" ("95%", "12 %", "3 pp"): accuracies, gaps
  and confidence levels come from the summary.

Allowed: integers of one or two digits that name or count things, such as "layer 1..5",
"5 seeds", "experiment 1", "CIFAR-10", "3x3 convolution", "1/(1 − p)". Code cells and
outputs are not scanned: their numbers are computed.
"""
import json
import re

import pytest

from dnnls_tf.study.config import PROJECT_ROOT
from dnnls_tf.notebook import NOTEBOOKS

LINK_TARGET = re.compile(r"\]\([^)]*\)|https?://\S+")
HAND_TYPED = {
    "decimal fraction": re.compile(r"\d\.\d|\d,\d(?!\d\d)|(?<![\w.])\.\d"),
    "scientific notation": re.compile(r"\d[eE][+\-−]?\d"),
    "thousands separator or a number of three or more digits": re.compile(r"\d,\d{3}\b|\d{3,}"),
    "number with a percent sign or pp": re.compile(r"\d\s*(%|pp\b|percent\b|per cent\b)"),
}


def hand_typed_numbers(text: str) -> list[str]:
    """Every hand-typed number of `text` under the rule above, as "<kind>: <context>"."""
    text = LINK_TARGET.sub("]", text)
    found = []
    for kind, pattern in HAND_TYPED.items():
        for match in pattern.finditer(text):
            start, end = max(0, match.start() - 25), min(len(text), match.end() + 25)
            found.append(f"{kind}: ...{text[start:end]!r}...")
    return found


@pytest.mark.parametrize("text", ["0.5", "accuracy 12.3 %", "lr 1e-3", "4.5e−02", ".5", "5,085 images",
                                  "seed 2023", "a 3 pp gap", "the 95% interval", "40 %", "0,5", "2E+1"])
def test_the_rule_flags_hand_typed_numbers(text):
    assert hand_typed_numbers(text), text


@pytest.mark.parametrize("text", ["layer 1..5", "5 seeds", "experiment 1", "CIFAR-10", "3x3 convolution",
                                  "1/(1 − p)", "E[g²] = (δ h)²/(1 − p)", "layers 1, 2 and 3", "`fc2`",
                                  "conv1..fc1", "[![Open in Colab](https://colab.research.google.com/assets/"
                                  "colab-badge.svg)](https://colab.research.google.com/github/a/b/blob/main/"
                                  "notebooks/01_learning_rate.ipynb)", "results/<profile>/exp1/summary.json"])
def test_the_rule_allows_names_and_small_counts(text):
    assert not hand_typed_numbers(text), hand_typed_numbers(text)


def markdown_cells(name: str) -> list[tuple[int, str]]:
    cells = json.loads((PROJECT_ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]
    return [(index, "".join(cell["source"])) for index, cell in enumerate(cells) if cell["cell_type"] == "markdown"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_markdown_cell_holds_a_hand_typed_number(name):
    problems = [f"cell {index}: {problem}" for index, text in markdown_cells(name)
                for problem in hand_typed_numbers(text)]
    assert not problems, f"{name}: print these numbers from a cell instead:\n" + "\n".join(problems)


def output_texts(cell: dict) -> list[str]:
    texts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            texts.append("".join(output["text"]))
        for mime in ("text/plain", "text/markdown", "text/html"):
            texts.append("".join(output.get("data", {}).get(mime, "")))
    return texts


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_saved_outputs_are_the_subset_profile_run_top_to_bottom_and_clean(name):
    cells = json.loads((PROJECT_ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"
            and "nbval-skip" not in cell.get("metadata", {}).get("tags", [])]
    counts = [cell["execution_count"] for cell in code]
    assert all(counts) and counts == list(range(counts[0], counts[0] + len(counts))), f"{name}: run top to bottom"
    assert "profile subset" in "".join(output_texts(code[0])), f"{name}: execute with DNNLS_PROFILE=subset"
    for cell in code:
        kinds = {(o["output_type"], o.get("name")) for o in cell.get("outputs", [])}
        assert ("error", None) not in kinds and ("stream", "stderr") not in kinds, f"{name}: {cell['source']}"
        for text in output_texts(cell):
            # an absolute path of this machine: outputs print paths relative to the project
            assert str(PROJECT_ROOT.parent) + "/" not in text, f"{name}: {text[:200]}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_a_walkthrough_shows_the_model_the_training_step_the_runs_and_the_papers_answer(name):
    """Each notebook's saved outputs show the Keras definition of the model (the builder's code and Keras'
    summary with its parameter count), the training step with its gradient capture, the table of runs the
    experiment trains and the paper's answer: what a student presents, read from the library, not copied."""
    cells = json.loads((PROJECT_ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]
    outputs = "\n".join(text for cell in cells if cell["cell_type"] == "code" for text in output_texts(cell))
    assert "def build_cnn(" in outputs and "keras.layers.Conv2D(" in outputs, f"{name}: the model's definition"
    assert "Total params" in outputs, f"{name}: Keras' summary of the model"
    assert "def _train_step(" in outputs and "tape.gradient(" in outputs, f"{name}: the training step"
    assert "self.capture.step_sums(" in outputs, f"{name}: the gradient capture in the step"
    assert "seeds" in outputs and "train / validation" in outputs, f"{name}: the table of runs"
    assert "> *" in outputs, f"{name}: the paper's answer, the brief's question quoted"
