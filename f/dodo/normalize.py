# requirements:
# annotated-types==0.8.0
# pydantic==2.14.3
# pydantic_core==2.50.4
# typing-inspection==0.4.5
# typing_extensions==4.16.0
"""Normalise one Dodo Payments event: a webhook envelope or a seed transform's flat payload."""

from f.dodo.lib.normalizer import normalize_event


def main(event: dict, webhook_id: str | None = None) -> dict:
    return normalize_event(event, webhook_id)
