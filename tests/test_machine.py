"""results.json says where its numbers came from: the CPU, cores, threads, processes, device, precision and
versions (`hyperguide.machine`), and results.md names it above the table."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from hyperguide.machine import cpu_model, describe, machine_record
from hyperguide.report.markdown import machine_line


def test_the_record_is_this_machine() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        record = machine_record("cpu", "fp32")
    finally:
        torch.set_num_threads(threads)
    assert record["threads"] == 1 and record["processes"] == 1
    assert record["cores"] >= 1 and record["device"] == "cpu" and record["precision"] == "fp32"
    assert record["torch"] == torch.__version__ and record["python"] == platform.python_version()
    assert record["cpu"] == cpu_model() and record["cpu"].strip() != ""
    line = describe(record)
    assert line.startswith(record["cpu"]) and "1 thread," in line and f"torch {torch.__version__}" in line
    assert "processes" not in line  # one process is not worth a word
    assert "2 processes" in describe({**record, "processes": 2}) and "2 threads," in describe({**record, "threads": 2})


def test_a_bench_records_its_machine_and_its_report_names_it(small_run: Path) -> None:
    results = json.loads((small_run / "results.json").read_text())
    machine = results["machine"]
    assert machine["threads"] == 1  # the fixture's bench ran on one thread
    assert machine["cpu"] == cpu_model() and machine["precision"] == "fp32"
    report = (small_run / "results.md").read_text()
    assert f"Machine: {describe(machine)}." in report
    del results["machine"]  # a results.json written before the record
    assert machine_line(results) == "Machine: not recorded (this results.json predates the record)."
