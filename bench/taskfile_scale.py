"""A task file the size of Meta-VQA through the `taskfile` universe: does it read, prepare and load with memory bounded
by the feature tables, not by the file's text?

The script generates (seeded, deterministic) a JSONL task file with Meta-VQA's sizes (docs/design.md §2.3: 1,243 tasks,
104,112 examples, 64,665 distinct images, about 9 answers per task) and a features file for it, then runs each command
in a fresh process and records its wall time and peak resident set:

    baseline   python -c "import hyperguide.universes"     (the interpreter and torch: every child pays it)
    stats      hyperguide stats taskfile --tasks F
    prepare    hyperguide prepare taskfile --tasks F --features-file X
    prepare (cached)   the same again (reads the task file and hashes the features file, finds the preparation)
    load       python -c: load_universe("taskfile", TaskFileOptions(tasks=F), prompts="answer"), then universe.task(i)
               for every task once (the rows of every support and query set, every answer's text, the tokens)

The task file: one task a line, the question `what is the object number I in this picture?`, answers from a
vocabulary of 4,000 strings, a heavy-tailed number of examples per task (21 + a log-normal share, scaled to the total:
median about 42 as Meta-VQA's), answers per task log-normal around 7 (at least 2, at most half the task's examples),
every answer at least 2 examples (so the universe's 70/30 split per answer gives every task a query side), no example
with a `split`, no image twice in a task, and every image id (`COCO_train2014_000000123456`-style; no image file
exists) used at least once. The features file holds `image/<id>` and `text/<question or answer>` (D,) and
`tokens/<question>` (L, D), L in 4..12, float32 standard-normal values: written straight in the safetensors format
(header, then the rows as one stream), a few thousand rows at a time, so the generator itself never holds the tables.
Generation runs in this process and is timed apart; it is not what is measured.

Peak memory: each command is started by a small launcher (`python -S`, about 8 MiB resident) that forks, execs it
and reaps it with `os.wait4(pid)`, whose rusage is that command's own (with any children it waited for):
`ru_maxrss`, the peak resident set in KiB on Linux, the number `/usr/bin/time -v` prints as "Maximum resident set
size" (what `/usr/bin/time` does, without needing it). Not straight from this script: Linux carries a process's
high-water mark across exec, so a command forked from this script (torch imported, the generator's lists) would report
at least this script's own peak (measured: a `python -c pass` child of a parent holding 800 MiB reports 810 MiB).
Nor `getrusage(RUSAGE_CHILDREN)`: the maximum over all children so far, not each one's. The peak holds the interpreter,
torch and the command's data; the `baseline` row is what the imports alone cost. For reference the output also gives
the sizes of the data: the task file, the features file, the prepared folder, and the tables themselves in memory
(images x D x 4 bytes, texts x D x 4, tokens x D x 4).

    python bench/taskfile_scale.py --json bench/results_taskfile_scale_cpu.json          # Meta-VQA's sizes
    python bench/taskfile_scale.py --tasks 40 --examples 2000 --images 1500 --dim 64      # a smoke run, seconds
    python bench/taskfile_scale.py --work /tmp/tfs --keep                                 # keep the files

Everything is written under `--work` (default a temporary folder; at the end what the run wrote is removed, unless
`--keep`, and the folder too if the run made it), and the children's HYPERGUIDE_HOME is `<work>/home`, so nothing
touches the user's cache.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MIN_EXAMPLES = 21  # Meta-VQA's filter: every task has at least 21 examples
MIN_PER_ANSWER = 2  # every answer reaches the query side of the universe's 70/30 split
ANSWER_VOCAB = 4000
TOKENS = (4, 12)  # question token counts, inclusive
CHUNK_ROWS = 4096  # feature rows generated and written at a time
MIB = 1024 * 1024

LOAD = """
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from hyperguide.universes import TaskFileOptions, load_universe
t1 = time.perf_counter()
universe = load_universe("taskfile", TaskFileOptions(tasks=Path(sys.argv[1])), prompts="answer")
t2 = time.perf_counter()
rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows = 0
for i in range(len(universe)):
    task = universe.task(i)
    rows += task.support_x.shape[0] + task.query_x.shape[0]
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "materialise_s": t3 - t2, "tasks": len(universe),
                  "rows": rows, "maxrss_after_load_kib": rss_loaded}))
"""


# Starts the command (argv[2:]) from a small process and writes its own usage to argv[1]. A child's ru_maxrss keeps
# the resident set of the process image it was forked from, up to its exec (Linux carries the old image's high-water
# mark across exec): started straight from this script, every child would report at least this script's own peak.
LAUNCHER = """
import json, os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
out = {"exit": os.waitstatus_to_exitcode(status), "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
       "maxrss": usage.ru_maxrss}
with open(sys.argv[1], "w") as f:
    json.dump(out, f)
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1243, help="tasks (default 1,243, Meta-VQA's)")
    parser.add_argument("--examples", type=int, default=104112, help="examples in all (default 104,112)")
    parser.add_argument("--images", type=int, default=64665, help="distinct image ids (default 64,665)")
    parser.add_argument("--dim", type=int, default=768, help="feature dimension (default 768)")
    parser.add_argument("--seed", type=int, default=0, help="the generator's seed (default 0)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the files (default a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep --work at the end")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds a child may run (default 1800)")
    parser.add_argument("--note", default="", help="a note recorded in the JSON (a shared machine, say)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.tasks < 2:
        parser.error("--tasks must be at least 2 (a universe needs one task to train on and one to test)")
    if args.examples < MIN_EXAMPLES * args.tasks:
        parser.error(f"--examples must be at least {MIN_EXAMPLES} x --tasks = {MIN_EXAMPLES * args.tasks}")
    if not MIN_EXAMPLES <= args.images <= args.examples:
        parser.error(f"--images must be between {MIN_EXAMPLES} and --examples")
    if args.dim < 1:
        parser.error("--dim must be >= 1")
    return args


# ------------------------------------------------------------------------------------------------------ generation


def task_sizes(rng: random.Random, tasks: int, examples: int, images: int) -> list[int]:
    """Examples per task: 21 + a log-normal share of the rest (median 21, mean 3x), summing to `examples` exactly;
    none above `images` (no image twice in a task)."""
    weights = [rng.lognormvariate(math.log(21.0), 1.48) for _ in range(tasks)]
    extra = examples - MIN_EXAMPLES * tasks
    total = sum(weights)
    cap = images - MIN_EXAMPLES
    extras = [min(cap, int(w * extra / total)) for w in weights]
    left = extra - sum(extras)
    order = sorted(range(tasks), key=lambda i: -weights[i])
    while left > 0:  # the rounding's remainder, to the heaviest tasks first, one at a time within the cap
        for i in order:
            if left == 0:
                break
            if extras[i] < cap:
                extras[i] += 1
                left -= 1
    return [MIN_EXAMPLES + e for e in extras]


def answer_counts(rng: random.Random, n: int) -> list[int]:
    """Examples per answer of a task of `n` examples: K answers (log-normal around 7, 2 <= K <= n // 2), each at
    least 2, the rest dealt by Zipf-like weights (a majority answer, a long tail)."""
    k = max(2, min(n // MIN_PER_ANSWER, round(rng.lognormvariate(math.log(7.0), 0.85))))
    counts = [MIN_PER_ANSWER] * k
    weights = [1.0 / (j + 1) for j in range(k)]
    for j in rng.choices(range(k), weights=weights, k=n - MIN_PER_ANSWER * k):
        counts[j] += 1
    return counts


def generate_tasks(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    """Write the JSONL task file a task at a time; returns its statistics and the texts and images it uses."""
    rng = random.Random(args.seed)
    sizes = task_sizes(rng, args.tasks, args.examples, args.images)
    biggest = max(sizes)
    # which examples (in file order) bring a fresh image id: the first `biggest` ones (so that a repeat can always
    # find an id its task lacks), and a random choice of the rest, `images` in all
    fresh = set(range(biggest)) | set(rng.sample(range(biggest, args.examples), args.images - biggest))
    numbers = rng.sample(range(1, max(600_000, 10 * args.images)), args.images)
    image_names = [f"COCO_train2014_{n:012d}" for n in numbers]
    vocab = [f"answer {j}" for j in range(ANSWER_VOCAB)]
    questions: list[str] = []
    answers_used: dict[str, None] = {}
    n_answers: list[int] = []
    position = 0
    next_fresh = 0
    with path.open("w", encoding="utf-8") as f:
        for t, n in enumerate(sizes):
            counts = answer_counts(rng, n)
            answers = rng.sample(vocab, len(counts))
            labels = [a for a, c in zip(answers, counts, strict=True) for _ in range(c)]
            rng.shuffle(labels)
            seen: set[int] = set()
            examples = []
            for label in labels:
                if position in fresh:
                    image = next_fresh
                    next_fresh += 1
                else:
                    image = rng.randrange(next_fresh)
                    while image in seen:
                        image = rng.randrange(next_fresh)
                seen.add(image)
                position += 1
                examples.append({"image": image_names[image], "answer": label})
            question = f"what is the object number {t + 1} in this picture?"
            task = {"question": question, "answers": answers, "kind": f"group {t % 7}", "examples": examples}
            f.write(json.dumps(task) + "\n")
            questions.append(question)
            answers_used.update(dict.fromkeys(answers))
            n_answers.append(len(answers))
    assert position == args.examples and next_fresh == args.images, (position, next_fresh)
    ordered = sorted(sizes)
    return {
        "questions": questions,
        "texts": questions + [a for a in answers_used if a not in set(questions)],
        "images": image_names,
        "stats": {
            "tasks": args.tasks,
            "examples": sum(sizes),
            "images": args.images,
            "texts": len(questions) + len(answers_used),
            "examples_per_task": {
                "mean": sum(sizes) / len(sizes),
                "median": ordered[len(ordered) // 2],
                "min": ordered[0],
                "max": ordered[-1],
            },
            "answers_per_task": {"mean": sum(n_answers) / len(n_answers), "min": min(n_answers), "max": max(n_answers)},
        },
    }


def write_features(
    path: Path, images: list[str], texts: list[str], questions: list[str], dim: int, seed: int
) -> dict[str, int]:
    """A safetensors file of float32 standard-normal rows: `image/<id>` and `text/<text>` (dim,), `tokens/<question>`
    (L, dim). Written as the format is (8-byte header length, JSON header, the data), the data one stream of rows
    generated CHUNK_ROWS at a time. Returns the row counts."""
    import numpy as np

    rng = random.Random(seed + 1)
    entries: list[tuple[str, list[int]]] = [(f"image/{k}", [dim]) for k in images]
    entries += [(f"text/{k}", [dim]) for k in texts]
    token_rows = 0
    for q in questions:
        length = rng.randint(*TOKENS)
        entries.append((f"tokens/{q}", [length, dim]))
        token_rows += length
    header: dict[str, Any] = {"__metadata__": {"generator": "bench/taskfile_scale.py", "seed": str(seed)}}
    offset = 0
    for key, shape in entries:
        size = 4 * math.prod(shape)
        header[key] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    rows = offset // (4 * dim)
    generator = np.random.default_rng(seed)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for start in range(0, rows, CHUNK_ROWS):
            chunk = generator.standard_normal((min(CHUNK_ROWS, rows - start), dim), dtype=np.float32)
            f.write(chunk.astype("<f4", copy=False).tobytes())
    return {"image_rows": len(images), "text_rows": len(texts), "token_rows": token_rows}


def check_features(path: Path, expected: int) -> None:
    """The file opens as safetensors and holds every key (a wrong offset or header would fail here, not in a child)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        keys = list(f.keys())
        if len(keys) != expected:
            raise SystemExit(f"features file {path}: {len(keys)} keys, expected {expected}")
        f.get_tensor(keys[-1])


# ----------------------------------------------------------------------------------------------------- measurement


def hyperguide_command() -> list[str]:
    script = Path(sys.executable).parent / "hyperguide"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from hyperguide.cli import main; sys.exit(main())"]


def shown(command: list[str]) -> str:
    """The command as a line, the load's code as `<LOAD>`."""
    return " ".join("<LOAD>" if part == LOAD else part for part in command)


def portable(text: str, work: Path) -> str:
    """`text` without this machine's paths, as the results file records it: the interpreter's folder dropped
    (`python`, `hyperguide`), the work folder as `<work>`."""
    return text.replace(f"{Path(sys.executable).parent}/", "").replace(str(work), "<work>")


def measure(name: str, command: list[str], env: dict[str, str], logs: Path, timeout: float) -> dict[str, Any]:
    """Run `command` in a fresh process started by a small launcher (LAUNCHER); its wall seconds, its own peak RSS
    and CPU seconds (the launcher's os.wait4), and the last line of its stdout."""
    print(f"[taskfile_scale] {name}: {shown(command)}", file=sys.stderr, flush=True)
    out_path, err_path, usage_path = logs / f"{name}.out", logs / f"{name}.err", logs / f"{name}.usage.json"
    launch = [sys.executable, "-S", "-c", LAUNCHER, str(usage_path), *command]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(launch, stdout=out, stderr=err, env=env, cwd=logs, start_new_session=True)
        timer = threading.Timer(timeout, os.killpg, (process.pid, signal.SIGKILL))  # the launcher and the command
        timer.start()
        try:
            process.wait()
        finally:
            timer.cancel()
    usage = json.loads(usage_path.read_text()) if usage_path.is_file() else {"exit": process.returncode}
    stdout = out_path.read_text(errors="replace")
    if process.returncode != 0 or usage["exit"] != 0:
        tail = err_path.read_text(errors="replace")[-4000:]
        took = f" after {usage['wall_s']:.1f} s" if "wall_s" in usage else f" (killed after --timeout {timeout:g} s?)"
        raise SystemExit(f"{name} failed (exit {usage['exit']}){took}: {shown(command)}\n{tail}")
    lines = stdout.strip().splitlines()
    kib = usage["maxrss"] / 1024 if sys.platform == "darwin" else usage["maxrss"]  # bytes on macOS, KiB on Linux
    return {
        "command": shown(command),
        "wall_s": usage["wall_s"],
        "cpu_s": usage["cpu_s"],
        "peak_rss_mib": kib / 1024,
        "last_line": lines[-1] if lines else "",
    }


def folder_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / MIB


def table(results: dict[str, Any]) -> str:
    base = results["runs"]["baseline"]["peak_rss_mib"]
    lines = ["| step | wall s | CPU s | peak RSS MiB | above baseline MiB |", "|---|---|---|---|---|"]
    for name, run in results["runs"].items():
        above = "" if name == "baseline" else f"{run['peak_rss_mib'] - base:.0f}"
        lines.append(f"| {name} | {run['wall_s']:.2f} | {run['cpu_s']:.2f} | {run['peak_rss_mib']:.0f} | {above} |")
    load = results["runs"]["load"].get("detail")
    if load:
        lines.append("")
        lines.append(
            f"load: import {load['import_s']:.2f} s, load_universe {load['load_s']:.2f} s, universe.task(i) for all "
            f"{load['tasks']} tasks {load['materialise_s']:.2f} s ({load['rows']} image rows); peak RSS after "
            f"load_universe {load['maxrss_after_load_kib'] / 1024:.0f} MiB"
        )
    sizes = results["sizes_mib"]
    data = results["data"]
    lines += [
        "",
        "| data | MiB |",
        "|---|---|",
        f"| task file (JSONL, {data['tasks']} tasks, {data['examples']} examples) | {sizes['task_file']:.1f} |",
        f"| features file (safetensors, {data['images']} images, {data['texts']} texts, tokens) | "
        f"{sizes['features_file']:.1f} |",
        f"| prepared folder | {sizes['prepared_folder']:.1f} |",
        f"| tables in memory: images {data['images']} x {results['dim']} x 4 B | {sizes['image_table']:.1f} |",
        f"| tables in memory: texts {data['texts']} x {results['dim']} x 4 B | {sizes['text_table']:.1f} |",
        f"| tables in memory: tokens {results['token_rows']} x {results['dim']} x 4 B | {sizes['token_table']:.1f} |",
        f"| tables in memory, all | {sizes['tables']:.1f} |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(HERE))
    args = parse_args(argv)
    from paper_scale import git_commit

    from hyperguide.machine import machine_record

    work = Path(tempfile.mkdtemp(prefix="taskfile_scale-")) if args.work is None else args.work.resolve()
    created = args.work is None or not work.exists()
    work.mkdir(parents=True, exist_ok=True)
    task_file, features_file, home, logs = (
        work / "tasks.jsonl",
        work / "features.safetensors",
        work / "home",
        work / "logs",
    )
    try:
        home.mkdir(exist_ok=True)
        logs.mkdir(exist_ok=True)
        start = time.perf_counter()
        made = generate_tasks(args, task_file)
        tasks_s = time.perf_counter() - start
        start = time.perf_counter()
        rows = write_features(features_file, made["images"], made["texts"], made["questions"], args.dim, args.seed)
        check_features(features_file, len(made["images"]) + len(made["texts"]) + len(made["questions"]))
        features_s = time.perf_counter() - start
        print(f"[taskfile_scale] generated in {tasks_s:.1f} s + {features_s:.1f} s: {made['stats']}", file=sys.stderr)
        del made["images"], made["texts"], made["questions"]

        env = {**os.environ, "HYPERGUIDE_HOME": str(home)}
        hg = hyperguide_command()
        tasks_arg = ["--tasks", str(task_file)]
        commands = {
            "baseline": [sys.executable, "-c", "import hyperguide.universes"],
            "stats": [*hg, "stats", "taskfile", *tasks_arg],
            "prepare": [*hg, "prepare", "taskfile", *tasks_arg, "--features-file", str(features_file)],
            "prepare (cached)": [*hg, "prepare", "taskfile", *tasks_arg, "--features-file", str(features_file)],
            "load": [sys.executable, "-c", LOAD, str(task_file)],
        }
        runs = {name: measure(name, cmd, env, logs, args.timeout) for name, cmd in commands.items()}
        runs["load"]["detail"] = json.loads(runs["load"]["last_line"])
        for run in runs.values():
            run["command"], run["last_line"] = portable(run["command"], work), portable(run["last_line"], work)
        prepared = [p for p in (home / "taskfile").iterdir() if p.is_dir()]
        row_bytes = 4 * args.dim
        sizes = {
            "task_file": task_file.stat().st_size / MIB,
            "features_file": features_file.stat().st_size / MIB,
            "prepared_folder": sum(folder_mib(p) for p in prepared),
            "image_table": rows["image_rows"] * row_bytes / MIB,
            "text_table": rows["text_rows"] * row_bytes / MIB,
            "token_table": rows["token_rows"] * row_bytes / MIB,
        }
        sizes["tables"] = sizes["image_table"] + sizes["text_table"] + sizes["token_table"]
        results: dict[str, Any] = {
            "what": "a Meta-VQA-sized task file through the taskfile universe: wall time and peak RSS of each command",
            "machine": machine_record("cpu", "fp32"),
            "note": args.note,
            "commit": git_commit(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "seed": args.seed,
            "dim": args.dim,
            "token_rows": rows["token_rows"],
            "data": made["stats"],
            "generation_s": {"task_file": tasks_s, "features_file": features_s},
            "sizes_mib": sizes,
            "peak_rss_method": "ru_maxrss of os.wait4 in a small launcher that forks and execs each command",
            "runs": runs,
        }
        print(table(results))
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n")
    finally:
        if not args.keep:  # what this run wrote; the folder too if this run made it
            task_file.unlink(missing_ok=True)
            features_file.unlink(missing_ok=True)
            shutil.rmtree(home, ignore_errors=True)
            shutil.rmtree(logs, ignore_errors=True)
            if created:
                shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"[taskfile_scale] kept {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
