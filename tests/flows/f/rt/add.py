def main(a: int, b: int = 10) -> int:
    return a + b
