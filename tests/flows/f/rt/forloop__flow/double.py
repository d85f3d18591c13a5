def main(x: int, index: int):
    if x < 0:
        raise ValueError(f"negative at {index}")
    return x * 2
