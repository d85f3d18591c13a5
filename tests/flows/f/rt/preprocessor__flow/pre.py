def preprocessor(event: dict):
    return {
        "kind": event["kind"],
        "body": event.get("body"),
        "raw": event.get("raw_string"),
        "signature": (event.get("headers") or {}).get("webhook_signature"),
    }
