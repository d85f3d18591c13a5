"""The README's table of environment variables lists every variable the code reads (f/,
local_runner/, tools/) and nothing it does not; DODO_SCHEMA is gone (a job's schema is its
`schema` argument, default "dodo", the one the flows record into)."""

import re
from pathlib import Path

from local_runner import config

ROOT = Path(__file__).resolve().parent.parent
READS = [  # os.environ / a copied env mapping, read (`env["X"] = ...` is a write), and Bun's process.env
    re.compile(r"""(?:environ\.get\(|environ\[|getenv\(|\benv\.get\(|\benv\[)\s*"""
               r"""["']([A-Z][A-Z0-9_]*)["'](?!\]\s*=(?!=))"""),
    re.compile(r"process\.env\.([A-Z][A-Z0-9_]*)"),
]


def names_read_by_the_code() -> set[str]:
    found = set(config.ENV_VARIABLES)  # the runner's mapping tables: read by name from the environment
    found |= {var for fields in config.ENV_RESOURCES.values() for var in fields.values()}
    for folder in ("f", "local_runner", "tools"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".mjs", ".ts") and "node_modules" not in path.parts:
                text = path.read_text()
                found |= {m for pattern in READS for m in pattern.findall(text)}
    return found


def names_in_the_table() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("Every environment variable the code reads:", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", row.split("|")[1])}


def test_the_readme_lists_every_variable_the_code_reads_and_no_other():
    code, table = names_read_by_the_code(), names_in_the_table()
    assert "DATABASE_URL" in code and "POSTHOG_API_KEY" in code  # the scan sees both kinds of read
    assert sorted(code - table) == [], "read by the code, missing from the README's table"
    assert sorted(table - code) == [], "in the README's table, read by no code"


def test_no_code_reads_a_schema_from_the_environment():
    assert "DODO_SCHEMA" not in names_read_by_the_code()
