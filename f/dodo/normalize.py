"""Normalise one Dodo Payments event: a webhook envelope or a seed transform's flat payload."""

from f.dodo.lib.normalizer import normalize_event


def main(event: dict, webhook_id: str | None = None) -> dict:
    return normalize_event(event, webhook_id)
