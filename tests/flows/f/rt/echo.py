def main(x=None):
    return x
