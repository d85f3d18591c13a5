import wmill


def main(nonce: str, fail_times: int) -> int:
    """Fails `fail_times` times per nonce, counting attempts in Windmill state."""
    state = wmill.get_state() or {}
    count = state.get(nonce, 0) + 1
    wmill.set_state({**state, nonce: count})
    if count <= fail_times:
        raise RuntimeError(f"attempt {count} failed")
    return count
