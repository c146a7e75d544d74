"""What the benchmark scripts share: the load driver, servers, machine info and result files.

The scripts run as `python bench/<name>.py`, which puts bench/ first on sys.path, so this folder
is the top-level package `lib` (`from lib.driver import closed_loop`). Its modules:

* `driver`: replies, runs and plans; the closed loop, warm-up and its accounting;
* `load`: the HTTP side of the loop, from this process or from spawned load processes;
* `servers`: server specs, starting a server subprocess, waiting for it and stopping it;
* `engine`: the appliance's EmbeddingService in the benchmark's own process;
* `machine`: the device, the CPU and the library versions; process set-up;
* `results`: result file naming, ratios, markdown tables and PASS/FAIL bars.
"""

from __future__ import annotations

from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH.parent
