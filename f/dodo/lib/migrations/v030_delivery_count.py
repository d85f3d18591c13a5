"""`record_event(jsonb)` again, counting every delivery of a webhook-id in `attempts`.

The inbox documents `attempts` as the number of deliveries of the webhook-id; v002
counted only those applied (the first and each one after a failure), so three
deliveries of one id read 1. A duplicate now adds one (a step re-run of the same flow
run, `rerun`, is not a new delivery and does not). The function is v002's (whose text
is frozen, being released) with that one change, replaced in place.
"""
from f.dodo.lib.migrations import v002_record_event as v002

_DUPLICATE = """            RETURN jsonb_build_object('status', 'duplicate', 'webhook_id', wid, 'inbox_status', prior,
                                      'attempts', tries - 1, 'applied', false);"""
_COUNTED = """            UPDATE @.webhook_events SET attempts = tries WHERE webhook_id = wid;   -- one more delivery
            RETURN jsonb_build_object('status', 'duplicate', 'webhook_id', wid, 'inbox_status', prior,
                                      'attempts', tries, 'applied', false);"""
_CREATE = "CREATE FUNCTION @.record_event(e jsonb)"


def _sql() -> str:
    text = v002.SQL
    if text.count(_DUPLICATE) != 1 or text.count(_CREATE) != 1:
        raise RuntimeError("v030: v002's function text changed; released migrations must not be edited")
    return text.replace(_DUPLICATE, _COUNTED).replace(_CREATE, "CREATE OR REPLACE FUNCTION @.record_event(e jsonb)")


SQL = _sql()
