"""README.md of an exported generator (`hyperguide export`): a model card as model hubs read one, YAML front matter
(`library_name`, `tags`) then Markdown, rendered from the folder's config.json record and the run's results.json.

It says what the row is, which seed and fold of which run it is, the row's line of the run's table (zero-shot and
k-shot accuracy, mean ± 95% CI over the run's seeds, `markdown.render_table`) and this seed's own zero-shot
accuracy, how to use the folder, what each file is, and the row's whole training configuration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hyperguide.report.markdown import caption, render_table
from hyperguide.rows import find_row

LIBRARY = "hyperguide"
TAGS = ("hyperguide", "hypernetwork", "meta-learning", "zero-shot", "visual-question-answering")


def _front_matter(universe: str) -> str:
    tags = "\n".join(f"- {tag}" for tag in (*TAGS, universe))
    return f"---\nlibrary_name: {LIBRARY}\ntags:\n{tags}\n---"


def render_results(results: Mapping[str, Any] | None, row: str, seed: int) -> str:
    """The row's line of the run's table and this seed's zero-shot accuracy, or why there is none."""
    if results is None:
        return "The run had not been evaluated when this folder was exported (no results.json): no results."
    entry = results["methods"].get(row)
    if entry is None:
        return f"The run's results.json has no row `{row}`: it was not evaluated."
    lines = [render_table({**results, "methods": {row: entry}}, None), "", caption(results)]
    seeds = list(results["seeds"])
    per_seed = entry["zero_shot"]["acc"]["per_seed"]
    if seed in seeds and len(per_seed) == len(seeds):
        lines += ["", f"This folder holds seed {seed}: zero-shot accuracy {per_seed[seeds.index(seed)]:.2f}%."]
    effect = entry.get("controls", {}).get("question_effect")
    if effect is not None:
        acc = effect["acc"]
        lines += [
            "",
            f"Question effect (own question minus another task's, over seeds): {acc['mean']:+.2f} points "
            f"({'n/a' if acc['ci95'] is None else format(acc['ci95'], '.2f')} 95% CI).",
        ]
    return "\n".join(lines)


def render_model_card(record: Mapping[str, Any], results: Mapping[str, Any] | None, files: Mapping[str, str]) -> str:
    """The model card of a bundle: `record` is its config.json, `results` the run's results.json (None when the run
    has none), `files` {file name: what it is}."""
    row, universe, seed, fold = record["row"], record["universe"], record["seed"], record["fold"]
    found = find_row(row)
    summary = found.spec.summary if found is not None else "a hyperguide row"
    if found is not None and found.value is not None:
        summary = summary.replace("@G", f"{found.value:g}")
    adapter = record["adapter"]
    reference = ", ".join(f"{k} `{v}`" for k, v in record["encoders"]["reference"].items())
    config = json.dumps(record["config"], indent=1)
    file_lines = "\n".join(f"| `{name}` | {what} |" for name, what in files.items())
    return f"""{_front_matter(universe)}

# `{row}` on {universe}: a hyperguide generator

Zero-shot adapter weights for a new task from its question alone: the row `{row}` ({summary}), trained with
hyperguide {record["hyperguide_version"]} on the {universe} universe (seed {seed}, fold {fold} of run
`{record["source"]["run"]}`).
Given a question and its candidate answers, it generates the {adapter["n_params"]:,} weights of a residual adapter on
frozen {adapter["feature_dim"]}-d image features ({adapter["hidden_dim"]} hidden units) that scores each image against
the answers' text embeddings. Nothing is fine-tuned and no label is used.

## Results

{render_results(results, row, seed)}

## Use

```bash
hyperguide generate PATH/TO/THIS/FOLDER "what color is the shape?" --answers red blue green --images shape.png
```

```python
from hyperguide import load_generator

generator = load_generator("PATH/TO/THIS/FOLDER")
out = generator.generate(["what color is the shape?"], [["red", "blue", "green"]], images=["shape.png"])
out.weights       # (1, {adapter["n_params"]}) flat adapter weights [W1, W2, b1, b2]
out.predictions   # [["red"]]: the answer the generated adapter picks for each image
```

A question that is one of the universe's own tasks may leave out its answers. Text is embedded with {reference},
which must be loadable on the machine (a local folder or the local hub cache: nothing is downloaded). Loading reads
JSON and safetensors only and never runs code from this folder; every file's sha256 and every tensor's shape are
checked against config.json first.

## Files

| file | what |
|---|---|
{file_lines}

## Training configuration

The run's resolved configuration (`hyperguide config` explains every knob; config.json holds it too).

<details>
<summary>config</summary>

```json
{config}
```

</details>
"""
