def preprocessor(event: dict):
    return {"seen": event}
