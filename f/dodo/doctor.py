# requirements:
# annotated-types==0.8.0
# anyio==4.16.0
# certifi==2026.10.19.post1
# distro==1.9.0
# dodopayments==1.123.0
# h11==0.16.0
# httpcore==1.0.9
# httpx==0.28.1
# idna==3.20
# psycopg2-binary==2.9.13
# pydantic==2.14.3
# pydantic_core==2.50.4
# sniffio==1.3.1
# typing-inspection==0.4.5
# typing_extensions==4.16.0
# wmill==1.850.0
"""Check every variable and resource the bundle needs, live; say what is wrong and the fix."""

from f.dodo.lib import doctor


def main(schema: str = "dodo", probe: bool = True, webhook_url: str = "") -> dict:
    return doctor.run_windmill(schema, probe=probe, webhook_url=webhook_url)
