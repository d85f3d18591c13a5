def main(inputs=None, gated=None, ungated=None):
    return {"inputs": inputs, "gated": gated, "ungated": ungated}
