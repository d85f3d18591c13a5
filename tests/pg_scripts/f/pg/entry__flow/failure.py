def main(error: dict):
    """What the flow's failure module sees of a failed postgresql step."""
    return {"seen": error}
