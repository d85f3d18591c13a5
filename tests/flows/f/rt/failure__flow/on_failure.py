def main(message: str, name: str, step_id: str, recover: bool = False):
    return {"handled": message, "name": name, "step": step_id, "recover": recover}
