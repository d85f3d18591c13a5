"""A job's own calls to Windmill's REST API (urllib to its BASE_INTERNAL_URL, as
f/dodo/lib/windmill_api makes them) are answered in process by local_runner.jobenv's
InProcessApi: the same status, content type and body as the API server gives the same
request over a socket, HTTPError for a 4xx included."""
from local_runner import Config, Runner

CODE = '''
import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request


def _headers(token):
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def _url(rest):
    return f"{os.environ['BASE_INTERNAL_URL']}/api/w/{os.environ['WM_WORKSPACE']}/{rest}"


def by_urllib(method, rest, token, body):
    request = urllib.request.Request(_url(rest), data=body, method=method, headers=_headers(token))
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return [response.status, response.headers["content-type"], response.read().decode()]
    except urllib.error.HTTPError as e:
        return [e.code, e.headers["content-type"], e.read().decode()]


def by_socket(method, rest, token, body):
    url = urllib.parse.urlsplit(_url(rest))
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.request(method, url.path, body=body, headers=_headers(token))
    response = conn.getresponse()
    out = [response.status, response.headers["content-type"], response.read().decode()]
    conn.close()
    return out


def main(calls: list):
    out = []
    for how, method, rest, token, body in calls:
        send = by_urllib if how == "urllib" else by_socket
        data = None if body is None else json.dumps(body).encode()
        out.append(send(method, rest, os.environ["WM_TOKEN"] if token is None else token, data))
    return out
'''

JSON = "application/json"
READS = [  # (method, rest, token (None: the job's own), body) -> (status, body)
    (("GET", "variables/get_value/f/api/pw", None, None), (200, '"hunter2"')),
    (("GET", "variables/get_value/f/api/absent", None, None), (404, None)),
    (("GET", "variables/get_value/f/api/pw", "wm_job_not_a_job", None), (401, None)),
    (("GET", "variables/exists/f/api/pw", None, None), (200, "true")),
    (("GET", "resources/exists/f/api/absent", None, None), (200, "false")),
    (("GET", "resources/get_value_interpolated/f/api/db", None, None), (200, '{"host": "db.local", "password": "hunter2"}')),
]


def _runner():
    cfg = Config(variables={"f/api/pw": "hunter2"}, resources={"f/api/db": {"host": "db.local", "password": "$var:f/api/pw"}})
    return Runner(".", cfg)


def test_urllib_calls_are_answered_as_the_api_server_answers_them():
    calls = [[how, *request] for request, _ in READS for how in ("urllib", "socket")]
    run = _runner().run_code("python3", CODE, {"calls": calls})
    assert run.success, run.result
    answers = run.result
    for i, (request, (status, body)) in enumerate(READS):
        by_urllib, by_socket = answers[2 * i], answers[2 * i + 1]
        assert by_urllib == by_socket, request
        assert by_urllib[0] == status, request
        if body is not None:
            assert by_urllib[1:] == [JSON, body], request


def test_a_write_through_urllib_is_seen_by_the_server_and_refused_twice():
    create = ("POST", "variables/create", None, {"path": "f/api/new", "value": "v", "is_secret": True,
                                                 "description": ""})
    calls = [["urllib", *create], ["socket", *create], ["socket", "GET", "variables/get_value/f/api/new", None, None]]
    run = _runner().run_code("python3", CODE, {"calls": calls})
    assert run.success, run.result
    assert [a[0] for a in run.result] == [201, 400, 200]
    assert run.result[2][2] == '"v"'


def test_a_request_target_reads_as_httpx_reads_it():
    """The server's and InProcessApi's requests reach wmill_local.answer as the wmill
    client's httpx.Request does: the path percent-decoded, the first value of a repeated
    query parameter (dict(httpx.QueryParams)), blank values kept."""
    import httpx  # noqa: PLC0415

    from local_runner.wmill_local import ApiRequest  # noqa: PLC0415

    target = "/api/w/ws/jobs/completed/list%2Fx?script_path_exact=f%2Fdodo%2Fwebhook&success=true&success=false&a="
    req = ApiRequest.from_target("GET", target, [], b"")
    via_httpx = httpx.Request("GET", "http://windmill.local" + target)
    assert req.path == via_httpx.url.path == "/api/w/ws/jobs/completed/list/x"
    assert req.params() == dict(via_httpx.url.params) == {"script_path_exact": "f/dodo/webhook", "success": "true",
                                                          "a": ""}
    assert req.query == via_httpx.url.query.decode()
