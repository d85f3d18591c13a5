"""`make mutants`: deliberate small bugs, one at a time, each of which some test must catch.

Each mutant replaces one exact snippet in one file of a throw-away copy of the repository
(its tracked and untracked, not ignored, files; .venv and node_modules linked) and runs
the tests named for it there. A mutant is "caught" when those tests fail; "SURVIVED"
means the suite is weaker than it looks (issue 16). The working tree is never touched.

    python -m tools.mutants                 # all of them
    python -m tools.mutants signature money # those whose name starts with one of these
    python -m tools.mutants --list

Exit status 1 if any mutant survived (or its snippet is no longer in the file: update it).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINKED = (".venv", "node_modules")


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    path: str        # file to break, relative to the repository
    old: str         # exact snippet, present once
    new: str
    tests: tuple     # pytest arguments that must fail


MUTANTS = (
    Mutant("signature/first-2-bytes", "f/dodo/lib/signature.py", "hmac.compare_digest(expected, sig)",
           "hmac.compare_digest(expected[:2], sig[:2])", ("tests/test_signature_bytes.py",)),
    Mutant("signature/prefix-accepted", "f/dodo/lib/signature.py", "hmac.compare_digest(expected, sig)",
           "bool(sig) and expected.startswith(sig)", ("tests/test_signature_bytes.py",)),
    Mutant("signature/appended-accepted", "f/dodo/lib/signature.py", "hmac.compare_digest(expected, sig)",
           "sig.startswith(expected)", ("tests/test_signature_bytes.py",)),
    Mutant("signature/last-byte-ignored", "f/dodo/lib/signature.py", "hmac.compare_digest(expected, sig)",
           "hmac.compare_digest(expected[:-1], sig[:-1])", ("tests/test_signature_bytes.py",)),
    Mutant("money/jpy-two-decimals", "f/dodo/lib/money.py", '_ZERO = "BIF CLP DJF GNF JPY KMF',
           '_ZERO = "BIF CLP DJF GNF KMF',
           ("tests/test_reports.py::test_amounts_are_in_each_currencys_own_decimals",
            "tests/test_export.py::test_amounts_in_each_currencys_own_decimals", "tests/test_normalize.py",
            "tests/test_crm_state.py::test_a_zero_decimal_currency_is_written_without_decimals")),
    Mutant("money/kwd-two-decimals", "f/dodo/lib/money.py", '_THREE = "BHD IQD JOD KWD LYD',
           '_THREE = "BHD IQD JOD LYD',
           ("tests/test_reports.py::test_amounts_are_in_each_currencys_own_decimals",
            "tests/test_export.py::test_amounts_in_each_currencys_own_decimals", "tests/test_normalize.py")),
    Mutant("money/demo-jpy-two-decimals", "f/dodo/lib/money.py", '_ZERO = "BIF CLP DJF GNF JPY KMF',
           '_ZERO = "BIF CLP DJF GNF KMF',
           ("tests/test_demo.py::test_demo_summary_matches_an_independent_computation",)),
    Mutant("defuse/empty-marker", "f/dodo/lib/inert.py", 'JOINER = "\\u2060"', 'JOINER = ""',
           ("tests/test_inert.py",)),
    Mutant("defuse/visible-marker", "f/dodo/lib/inert.py", 'JOINER = "\\u2060"', 'JOINER = " "',
           ("tests/test_inert.py",)),
    Mutant("defuse/keys-left-alone", "f/dodo/lib/inert.py", "copy[_text(key)] = _item(item, stack)",
           "copy[key] = _item(item, stack)", ("tests/test_inert.py",)),
    Mutant("defuse/nested-strings-left-alone", "f/dodo/lib/inert.py",
           'return JOINER + item if item.startswith("$") else item', "return item", ("tests/test_inert.py",)),
    Mutant("standin/slack-content-type", "f/dodo/lib/channels.py", '"Content-Type": "application/json; charset=utf-8"',
           '"Content-Type": "text/plain"',
           ("tests/test_replay.py::test_events_are_replayed_in_event_time_order",
            "tests/test_reports.py::test_sends_slack_and_email_once_per_day")),
    Mutant("standin/slack-extra-field", "f/dodo/lib/channels.py", 'content=json.dumps({"channel": channel, **message})',
           'content=json.dumps({"channel": channel, "mrkdwn": True, **message})',
           ("tests/test_replay.py::test_events_are_replayed_in_event_time_order",
            "tests/test_reports.py::test_sends_slack_and_email_once_per_day")),
    Mutant("standin/hubspot-extra-field", "f/dodo/lib/hubspot.py",
           'result = self.call("POST", f"/crm/v3/objects/{object_type}/batch/upsert", body)',
           'result = self.call("POST", f"/crm/v3/objects/{object_type}/batch/upsert", {**body, "x": 1})',
           ("tests/test_replay.py::test_replaying_a_failed_event_twice_sends_each_sink_once",
            "tests/test_flows_e2e.py::test_a_failing_sink_is_retried_with_backoff_then_marks_the_inbox_row_failed")),
    Mutant("standin/twilio-auth-swapped", "f/dodo/lib/channels.py", "auth=(sid, token), data=form",
           "auth=(token, sid), data=form",
           ("tests/test_soak.py::test_the_soak_stand_ins_take_the_bundles_requests_and_refuse_malformed_ones",)),
    Mutant("standin/twilio-json-body", "f/dodo/lib/channels.py", "auth=(sid, token), data=form",
           "auth=(sid, token), json=form",
           ("tests/test_soak.py::test_the_soak_stand_ins_take_the_bundles_requests_and_refuse_malformed_ones",)),
    Mutant("store/out-of-range-status", "f/dodo/lib/store.py",
           "return _call(conn, dict(bare, payload=_storable(call[\"payload\"]), error=error, step=STEP), schema)",
           "return dict(_call(conn, dict(bare, payload=_storable(call[\"payload\"]), error=error, step=STEP), "
           "schema), status=\"recorded\")",
           ("tests/test_postgres_store.py::test_an_amount_postgres_cannot_hold_is_recorded_failed",)),
    Mutant("record/search-path-dropped", "f/dodo/lib/migrations/v050_record_delivery.py",
           "SET search_path FROM CURRENT\n", "\n",
           ("tests/test_record_delivery_sql.py",)),
    Mutant("record/schema-version-unchecked", "f/dodo/lib/migrations/v050_record_delivery.py",
           "IF found < (call->>'needs')::integer THEN", "IF false THEN",
           ("tests/test_record_delivery_sql.py::test_a_schema_behind_the_code_is_refused_naming_the_fix",)),
    Mutant("record/call-not-defused-for-postgres", "f/dodo/lib/record_call.py",
           "json.loads(pg_json(call | extra))", "call | extra",
           ("tests/test_store_bad_input.py",)),
    Mutant("record/no-delivery-attempt", "f/dodo/lib/record_call.py",
           "({\"attempt\": attempt} if attempt else {})", "{}",
           ("tests/test_record_restart.py",)),
    Mutant("store/seed-flat-rejected", "f/dodo/lib/normalizer.py", "    if seed_type in ev.SEED_TYPES:\n",
           "    if seed_type in ev.SEED_TYPES and seed_type != \"payment.succeeded\":\n",
           ("tests/test_postgres_store.py::test_a_seed_transform_flat_payload_is_recorded",)),
    Mutant("seed/vendored-transform-edited", "tests/fixtures/seed/transforms.js",
           "amount: (p.total_amount / 100).toFixed(2),", "amount: (p.total_amount / 100).toFixed(3),",
           ("tests/test_normalize.py",)),
)


def copy_repo(dest: Path) -> None:
    """The repository's tracked and untracked (not ignored) files, the environments linked."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if rel.split("/", 1)[0] in LINKED or not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    for name in LINKED:
        if (ROOT / name).exists():
            os.symlink((ROOT / name).resolve(), dest / name)


def apply(mutant: Mutant, repo: Path) -> None:
    target = repo / mutant.path
    text = target.read_text(encoding="utf-8")
    if text.count(mutant.old) != 1:
        raise LookupError(f"{mutant.name}: the snippet is in {mutant.path} {text.count(mutant.old)} times, "
                          "not once: update tools/mutants.py")
    target.write_text(text.replace(mutant.old, mutant.new), encoding="utf-8")


def run(mutant: Mutant) -> tuple[bool, str]:
    """(caught, the first failing test or why it survived)."""
    with tempfile.TemporaryDirectory(prefix="dodo-mutant-") as tmp:
        repo = Path(tmp)
        copy_repo(repo)
        apply(mutant, repo)
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-o",
                               "addopts=", *mutant.tests], cwd=repo, capture_output=True, text=True,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.M)
    if proc.returncode == 0:
        return False, "all named tests passed"
    if proc.returncode != 1 or not failed:
        return True, f"pytest exit {proc.returncode}: " + (proc.stdout.strip().splitlines() or ["?"])[-1]
    return True, failed[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="name prefixes (default: every mutant)")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or any(m.name.startswith(p) for p in args.only)]
    if args.list:
        for m in chosen:
            print(f"{m.name:36} {m.path}")
        return 0
    survived = 0
    for m in chosen:
        try:
            caught, detail = run(m)
        except LookupError as exc:
            caught, detail = False, str(exc)
        survived += not caught
        print(f"{'caught  ' if caught else 'SURVIVED'} {m.name:36} {detail}", flush=True)
    print(f"{len(chosen) - survived}/{len(chosen)} mutants caught")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
