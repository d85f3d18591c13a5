import builtins

import wmill


def main(nonce: str, errors: list):
    """Raises the builtin exception named errors[n] on attempt n (counted per nonce in
    Windmill state); succeeds once the list is spent."""
    state = wmill.get_state() or {}
    count = state.get(nonce, 0)
    wmill.set_state({**state, nonce: count + 1})
    if count < len(errors):
        raise getattr(builtins, errors[count])(f"attempt {count + 1}: {errors[count]}")
    return count + 1
