def main(step_id: str, message: str, flow_input: dict):
    return {"step_id": step_id, "message": message, "flow_input": flow_input}
