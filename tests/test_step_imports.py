"""What the recorded event's steps import: each Windmill job is a fresh interpreter, so an
import a step does not need is paid by every event (docs/internals.md, "What each hot-path
step imports"). Each check runs in a fresh interpreter, as the job does."""
import json
import subprocess
import sys
from pathlib import Path

from tests.fixture_data import envelope
from tests.provider_standins import SmtpServer

ROOT = Path(__file__).resolve().parent.parent


def _fresh(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])


_RECORD = """
import json, sys
from f.dodo.lib import events
from f.dodo.lib.normalizer import normalize_event
event = normalize_event(json.loads(sys.argv[1]), "msg_1")
print(json.dumps({"amount": event["amount"], "defined": sorted(c.__name__ for c in events._Model.__subclasses__()),
                  "metadata": "importlib.metadata" in sys.modules}))
"""


def test_the_record_step_defines_only_the_model_of_its_event_and_reads_no_package_metadata():
    got = _fresh(_RECORD, json.dumps(envelope("dispute.opened")))
    assert got["amount"] == "49.99"  # normalised by the model
    assert got["defined"] == ["Customer", "Dispute", "Envelope"]
    assert got["metadata"] is False  # pydantic's plugin lookup imports importlib.metadata


_CRM = """
import json, sys
import f.dodo.crm.sync_contact
print(json.dumps(sorted(m for m in sys.modules if m.startswith("f.dodo.lib."))))
"""


def test_the_crm_step_imports_none_of_the_notification_modules():
    # on a worker each library module is an HTTP fetch and a compile in every job (loader.py@032ffb75)
    imported = {m.removeprefix("f.dodo.lib.") for m in _fresh(_CRM)}
    assert {"crm", "hubspot", "ledger"} <= imported
    assert imported.isdisjoint({"channels", "notify", "render", "routing", "smtp_wire"})


_SINKS = """
import json, sys
import f.dodo.crm.sync_contact, f.dodo.notify.send
heavy = ("pydantic", "importlib.metadata", "uuid", "dataclasses", "http.client", "f.dodo.lib.analytics", "f.dodo.lib.campaigns",
         "f.dodo.lib.gcalendar", "f.dodo.lib.events", "smtplib", "typing", "html", "urllib.parse")
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


def test_the_crm_and_notify_steps_import_no_model_no_unconfigured_destination():
    assert _fresh(_SINKS) == []


_HTTP = """
import json, sys
from f.dodo.lib import http_client
resp = http_client.shared().get(sys.argv[1])
print(json.dumps({"status": resp.status_code, "idna": "encodings.idna" in sys.modules,
                  "urllib.parse": "urllib.parse" in sys.modules}))
"""


def test_a_request_to_an_ascii_host_imports_neither_the_idna_codec_nor_urllib_parse(httpserver):
    httpserver.expect_request("/ping", method="GET", query_string="a=1").respond_with_data("ok")
    url = httpserver.url_for("/ping") + "?a=1#frag"
    assert "//localhost:" in url  # a name to resolve, not an address
    assert _fresh(_HTTP, url) == {"status": 200, "idna": False, "urllib.parse": False}


_EMAIL = """
import json, sys
from f.dodo.lib import channels
channels.send_email({"host": "127.0.0.1", "port": int(sys.argv[1])}, sender="a@shop.example", to=["ops@shop.example"],
                    subject="s", text="t", html="<p>t</p>", message_id="<m@dodo-bundle>")
print(json.dumps([m for m in ("smtplib", "email", "encodings.idna") if m in sys.modules]))
"""


def test_sending_an_email_imports_neither_smtplib_nor_the_email_package():
    with SmtpServer() as smtp:
        assert _fresh(_EMAIL, str(smtp.port)) == []
        assert len(smtp.messages) == 1
