"""Import cost of the MySQL drivers the mirror could use, as fresh Python processes.

Each Windmill job is a new interpreter, so the mirror's job pays its driver's import
every run. Figure: CPU (user + sys, the kernel's accounting of the finished child) of
`python -c "import X"`, interleaved rounds, median, against `python -c pass` in the same
rounds. PYTHON=/path/to/python measures another interpreter (one with
mysql-connector-python installed: the bundle's venv has PyMySQL only); a driver that is
not installed is reported as such.
"""
from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys

CASES = {"baseline": "pass", "pymysql": "import pymysql", "mysql.connector": "import mysql.connector",
         "psycopg2 (the Postgres driver, for scale)": "import psycopg2, psycopg2.extensions, psycopg2._json"}


def _cpu(python: str, code: str) -> float | None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([python, "-c", code], capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        return None
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run(quick: bool = False) -> dict:
    python = os.environ.get("PYTHON", sys.executable)
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(7 if quick else 21):
        for name, code in CASES.items():
            cpu = _cpu(python, code)
            if cpu is not None:
                samples[name].append(cpu)
    base = statistics.median(samples["baseline"])
    figures = {name: ({"cpu_ms": round(statistics.median(s) * 1000, 1), "x_baseline": round(statistics.median(s) / base, 1)}
                      if s else "not installed") for name, s in samples.items()}
    pym = figures["pymysql"]
    base_text = f"python -c pass: {figures['baseline']['cpu_ms']} ms"
    rows = [{"name": f"import CPU: {name} (interleaved rounds, medians)", "measured": f"{f['cpu_ms']} ms",
             "baseline_text": base_text, "ratio": f["x_baseline"]} if isinstance(f, dict)
            else {"name": f"import CPU: {name}", "measured": f}
            for name, f in figures.items() if name != "baseline"]
    return {"name": "mysql_driver", "python": python, "figures": figures, "baseline": "python -c pass",
            "ratio": pym["x_baseline"] if isinstance(pym, dict) else None, "rows": rows}


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
