import wmill


def main(token: str):
    wmill.set_progress(50)
    return {
        "token": token,
        "variable": wmill.get_variable("f/rt/secret"),
        "db_host": wmill.get_resource("f/rt/db")["host"],
        "db_password": wmill.get_resource("f/rt/db")["password"],
    }
