"""The GitHub Action (integrations/github-action) run as the runner runs it, against a real Ferry.

The runner is simulated: INPUT_* variables, GITHUB_OUTPUT, GITHUB_ENV and RUNNER_TEMP, and
an OIDC request endpoint shaped like GitHub's (`GET <ACTIONS_ID_TOKEN_REQUEST_URL>&audience=…`
with `Authorization: Bearer <ACTIONS_ID_TOKEN_REQUEST_TOKEN>`, answering `{"value": <jwt>}`)
whose tokens the development issuer signs (`ferry-dev-idp mint`), a fresh one per request.
Every run's standard output and error are searched for the request token, the OIDC token
and the issued token: they may appear only in the `::add-mask::` lines, which come first.
"""

import http.server
import json
import os
import re
import secrets
import stat
import subprocess
import threading
import time
import urllib.parse

import jwt
import pytest
import requests
import yaml

from ferry_harness import BIN, ROOT, listening_socket, start_ferry, stop

ACTION = ROOT / "integrations" / "github-action" / "index.js"
AUDIENCE = "https://deploy.example.com"
SUBJECT_AUDIENCE = "ferry-github-action-test"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
REQUEST_TOKEN = secrets.token_urlsafe(32)


class Runner(http.server.BaseHTTPRequestHandler):
    """GitHub's OIDC request endpoint, minting with the development issuer."""

    idp_dir = None
    served = []  # (audience, token) per request answered

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path != "/oidc/token" or query.get("api-version") != ["2.0"] or len(query.get("audience", [])) != 1:
            return self.answer(400, b"")
        if self.headers.get("Authorization", "").split(" ", 1) not in (["Bearer", REQUEST_TOKEN], ["bearer", REQUEST_TOKEN]):
            return self.answer(401, b"")
        audience = query["audience"][0]
        token = subprocess.run(
            [BIN / "ferry-dev-idp", "mint", "--data-dir", self.idp_dir, "--sub", "repo:acme/app:ref:refs/heads/main",
             "--aud", audience, "--claim", "repository=acme/app", "--claim", 'repository_owner_id="65"',
             "--claim", f"jti={secrets.token_hex(8)}"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        Runner.served.append((audience, token))
        self.answer(200, json.dumps({"count": 1, "value": token}).encode())

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class Env:
    pass


@pytest.fixture(scope="module")
def env(tmp_path_factory, request):
    for tool in [BIN / "ferry", BIN / "ferry-dev-idp"]:
        assert tool.exists(), f"{tool} missing: build with `cargo build --bins` first"
    e = Env()
    tmp = tmp_path_factory.mktemp("action")
    idp = subprocess.Popen(
        [BIN / "ferry-dev-idp", "serve", "--data-dir", tmp / "idp", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    request.addfinalizer(lambda: stop(idp))
    e.idp = idp.stdout.readline().strip().rsplit(" ", 1)[-1]
    assert e.idp.startswith("http://127.0.0.1:"), e.idp
    Runner.idp_dir = tmp / "idp"
    runner, runner_url = serve(Runner)
    e.request_url = f"{runner_url}/oidc/token?api-version=2.0"
    sock = listening_socket()
    e.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    (tmp / "ferry.yaml").write_text(
        f"""
issuer: {e.url}
data_dir: {tmp / "data"}
admin: {{ listen: "off" }}
limits:
  shutdown_delay: 0s
outbound:
  allow_insecure_origins: ["{e.idp}"]
providers:
  - id: gha
    kind: oidc
    issuer: {e.idp}
    audiences: [{SUBJECT_AUDIENCE}, {e.url}]
    condition: assertion.repository_owner_id == '65'
    mapping:
      subject: "'repo:' + assertion.repository"
      attributes:
        repository: assertion.repository
audiences:
  - audience: {AUDIENCE}
    ignore_unknown_scopes: true
    rules:
      - allow: provider == 'gha' && attribute.repository == 'acme/app'
        scopes: [read, write]
"""
    )
    ferry = start_ferry(sock, tmp / "ferry.yaml", log=tmp / "ferry.log")
    request.addfinalizer(lambda: stop(ferry))
    e.tmp = tmp
    e.runs = 0
    yield e
    runner.shutdown()


def file_commands(path):
    """GITHUB_OUTPUT / GITHUB_ENV as written: name<<delimiter, value, delimiter."""
    text = path.read_text()
    found = re.findall(r"^([^\n<]+)<<(ghadelimiter_[0-9a-f-]+)\n(.*?)\n\2\n", text, re.M | re.S)
    assert "".join(f"{n}<<{d}\n{v}\n{d}\n" for n, d, v in found) == text, "a malformed file command"
    return {name: value for name, _, value in found}


class Run:
    pass


def run_action(e, inputs, oidc=True, popen=False):
    """Runs the action's entry point as the runner would, in a fresh runner directory."""
    e.runs += 1
    d = e.tmp / f"run{e.runs}"
    (d / "temp").mkdir(parents=True)
    (d / "output").touch()
    (d / "env").touch()
    (d / "state").touch()
    environ = {"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(d / "output"), "GITHUB_ENV": str(d / "env"),
               "GITHUB_STATE": str(d / "state"), "RUNNER_TEMP": str(d / "temp")}
    if oidc is True:
        oidc = {"ACTIONS_ID_TOKEN_REQUEST_URL": e.request_url, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": REQUEST_TOKEN}
    environ.update(oidc or {})
    environ.update({f"INPUT_{name.upper()}": value for name, value in inputs.items()})
    if popen:
        return subprocess.Popen(["node", ACTION], env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = subprocess.run(["node", ACTION], env=environ, capture_output=True, text=True, timeout=60)
    r = Run()
    r.code, r.stdout, r.stderr, r.dir = out.returncode, out.stdout, out.stderr, d
    r.lines = out.stdout.splitlines()
    r.outputs = file_commands(d / "output")
    r.exported = file_commands(d / "env")
    r.state = file_commands(d / "state")
    return r


def run_post(r, state):
    """The post step as the runner runs it: the main step's state as STATE_* variables."""
    environ = {"PATH": os.environ["PATH"], "RUNNER_TEMP": str(r.dir / "temp"),
               **{f"STATE_{name}": value for name, value in state.items()}}
    return subprocess.run(["node", ACTION.parent / "post.js"], env=environ, capture_output=True, text=True, timeout=60)


def assert_masked_first(r, secret_values):
    """SECRET_VALUES are announced with ::add-mask::, in this order, before any other line,
    and appear nowhere else on standard output or standard error."""
    masks = [f"::add-mask::{s}" for s in secret_values]
    assert r.lines[: len(masks)] == masks, r.stdout
    assert_no_leak(r, secret_values)


def assert_no_leak(r, secret_values):
    """No secret on standard output or standard error but in its ::add-mask:: line."""
    for line in r.lines + r.stderr.splitlines():
        for s in secret_values + [REQUEST_TOKEN]:
            assert s not in line or line == f"::add-mask::{s}", f"a secret was printed: {line[:40]}…"


def inputs(e, **extra):
    base = {"url": e.url, "audience": AUDIENCE, "subject-audience": SUBJECT_AUDIENCE}
    return {**base, **extra}


def verify(e, token, scope):
    key = jwt.PyJWKClient(f"{e.url}/jwks").get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience=AUDIENCE, issuer=e.url)
    assert claims["sub"] == "repo:acme/app"
    assert claims["scope"] == scope
    return claims


def test_action_masks_every_secret_first_then_outputs_and_exports_the_token(env):
    before = len(Runner.served)
    r = run_action(env, inputs(env, scope="read", **{"requested-token-type": ACCESS_TOKEN_TYPE,
                                                      "export-env-var": "FERRY_TOKEN"}))
    assert r.code == 0, r.stdout + r.stderr
    assert len(Runner.served) == before + 1
    audience, oidc_token = Runner.served[-1]
    assert audience == SUBJECT_AUDIENCE
    access = r.outputs["access-token"]
    assert_masked_first(r, [REQUEST_TOKEN, oidc_token, access])
    verify(env, access, "read")
    assert 0 < int(r.outputs["expires-in"]) <= 3600
    assert r.exported == {"FERRY_TOKEN": access}
    # Twin of the credential-file test: without credentials-file, no file and no variable.
    assert list((r.dir / "temp").iterdir()) == []
    assert "credentials-file-path" not in r.outputs and r.state == {}


def test_action_subject_audience_defaults_to_the_url(env):
    r = run_action(env, {"url": env.url + "/", "audience": AUDIENCE})
    assert r.code == 0, r.stdout
    assert Runner.served[-1][0] == env.url
    verify(env, r.outputs["access-token"], "read write")


def test_action_credentials_file_is_googles_external_account_and_keeps_refreshing(env):
    from google.auth import identity_pool
    from google.auth.transport.requests import Request

    r = run_action(env, inputs(env, **{"credentials-file": "true"}))
    assert r.code == 0, r.stdout + r.stderr
    assert_masked_first(r, [REQUEST_TOKEN, Runner.served[-1][1], r.outputs["access-token"]])
    path = r.outputs["credentials-file-path"]
    assert r.exported == {"GOOGLE_APPLICATION_CREDENTIALS": path}
    assert os.path.dirname(path) == str(r.dir / "temp")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(open(path).read()) == {
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": JWT_TYPE,
        "token_url": f"{env.url}/token",
        "credential_source": {
            "url": f"{env.request_url}&audience={SUBJECT_AUDIENCE}",
            "headers": {"Authorization": f"Bearer {REQUEST_TOKEN}"},
            "format": {"type": "json", "subject_token_field_name": "value"},
        },
    }
    assert r.state == {"credentials-file-path": path}
    # The file, unmodified, in google-auth: every refresh fetches a fresh OIDC token from
    # the runner's endpoint (none is stored), so refreshes outlive GitHub's five minutes.
    creds = identity_pool.Credentials.from_file(path)
    for _ in range(2):
        before = len(Runner.served)
        creds.refresh(Request())
        assert len(Runner.served) == before + 1
        verify(env, creds.token, "read write")
    # The post step removes it (it holds the request token); a state naming any other
    # file, here one of the same name outside RUNNER_TEMP, removes nothing.
    decoy = r.dir / os.path.basename(path)
    decoy.write_text("{}")
    refused = run_post(r, {"credentials-file-path": str(decoy)})
    assert refused.returncode == 1 and decoy.exists() and os.path.exists(path)
    done = run_post(r, r.state)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not os.path.exists(path)


def test_action_subject_audience_is_url_encoded_in_the_credential_source(env):
    r = run_action(env, inputs(env, **{"credentials-file": "true", "subject-audience": "a b&c=d"}))
    # Ferry does not know that audience (the twin above exchanges), but the runner is asked for it verbatim.
    assert r.code == 1
    assert Runner.served[-1][0] == "a b&c=d"
    assert r.outputs == {}


@pytest.mark.parametrize("missing", [
    ["ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"],
    ["ACTIONS_ID_TOKEN_REQUEST_URL"],
    ["ACTIONS_ID_TOKEN_REQUEST_TOKEN"],
])
def test_action_without_id_token_write_says_so(env, missing):
    before = len(Runner.served)
    oidc = {"ACTIONS_ID_TOKEN_REQUEST_URL": env.request_url, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": REQUEST_TOKEN}
    for name in missing:
        del oidc[name]
    r = run_action(env, inputs(env), oidc=oidc)
    assert r.code == 1
    errors = [line for line in r.lines if line.startswith("::error::")]
    assert len(errors) == 1 and "permissions: id-token: write" in errors[0], r.stdout
    assert len(Runner.served) == before and r.outputs == {} and r.exported == {}
    assert_masked_first(r, [REQUEST_TOKEN] if "ACTIONS_ID_TOKEN_REQUEST_TOKEN" in oidc else [])


@pytest.mark.parametrize("url", [
    "http://ferry.example.com",
    "http://127.0.0.1.example.com",
    "http://localhost.example.com:8080",
    "ftp://127.0.0.1",
])
def test_action_refuses_plain_http_to_a_host_that_is_not_loopback(env, url):
    """Twin of the tests above, which reach Ferry over http on 127.0.0.1: refused before
    the OIDC token is even requested."""
    before = len(Runner.served)
    r = run_action(env, inputs(env, url=url))
    assert r.code == 1
    assert r.lines[1:] == ["::error::the url input must use https (plain http is allowed only to a loopback address)"]
    assert len(Runner.served) == before and r.outputs == {}


def test_action_prints_ferrys_error_code_and_description_only(env):
    r = run_action(env, inputs(env, audience="https://unknown.example.com"))
    assert r.code == 1
    oidc_token = Runner.served[-1][1]
    # The same exchange sent directly: the action quotes Ferry's fixed error.
    direct = requests.post(f"{env.url}/token", data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": oidc_token,
        "subject_token_type": JWT_TYPE, "audience": "https://unknown.example.com"}).json()
    assert r.lines[2:] == [f"::error::Ferry refused the exchange (HTTP 400): {direct['error']} "
                           f"({direct['error_description']})"], r.stdout
    assert_masked_first(r, [REQUEST_TOKEN, oidc_token])
    assert r.outputs == {} and r.exported == {}


class Scripted(http.server.BaseHTTPRequestHandler):
    """A stand-in for Ferry: answers from SCRIPT in turn, then forwards to the real one."""

    script = []
    seen = []
    ferry = None

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Scripted.seen.append(time.monotonic())
        if Scripted.script:
            status, headers, payload = Scripted.script.pop(0)
        else:
            answer = requests.post(f"{self.ferry}/token", data=body,
                                   headers={"Content-Type": self.headers["Content-Type"]})
            status, headers, payload = answer.status_code, {}, answer.content
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted(env):
    Scripted.ferry, Scripted.seen, Scripted.script = env.url, [], []
    server, url = serve(Scripted)
    yield url
    server.shutdown()


def test_action_retries_429_and_503_honouring_retry_after(env, scripted):
    Scripted.script = [(429, {"Retry-After": "1"}, b""), (503, {"Retry-After": "0"}, b"busy"),
                       (503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, b"")]
    r = run_action(env, inputs(env, url=scripted, **{"subject-audience": SUBJECT_AUDIENCE}))
    assert r.code == 0, r.stdout
    assert len(Scripted.seen) == 4, "the fourth attempt is the last one allowed"
    assert Scripted.seen[1] - Scripted.seen[0] >= 1.0, "Retry-After: 1 was not honoured"
    oidc_token, access = Runner.served[-1][1], r.outputs["access-token"]
    # The issued token is masked as soon as it arrives, before the closing line.
    assert r.lines[:6] == [f"::add-mask::{REQUEST_TOKEN}", f"::add-mask::{oidc_token}",
                           "Ferry answered HTTP 429 (attempt 1 of 4); retrying in 1 s",
                           "Ferry answered HTTP 503 (attempt 2 of 4); retrying in 0 s",
                           "Ferry answered HTTP 503 (attempt 3 of 4); retrying in 0 s",  # a date in the past
                           f"::add-mask::{access}"], r.stdout
    assert_no_leak(r, [oidc_token, access])
    verify(env, r.outputs["access-token"], "read write")


def test_action_gives_up_after_a_bounded_number_of_attempts(env, scripted):
    Scripted.script = [(503, {"Retry-After": "0"}, b"")] * 10
    r = run_action(env, inputs(env, url=scripted))
    assert r.code == 1
    assert len(Scripted.seen) == 4
    assert r.lines[-1] == "::error::Ferry refused the exchange (HTTP 503)"
    assert r.outputs == {}


def test_action_caps_a_long_retry_after_at_60_seconds(env, scripted):
    Scripted.script = [(429, {"Retry-After": "86400"}, b"")]
    p = run_action(env, inputs(env, url=scripted), popen=True)
    try:
        lines = [p.stdout.readline().rstrip("\n") for _ in range(3)]
    finally:
        p.kill()
        p.wait(timeout=10)
    assert lines[2] == "Ferry answered HTTP 429 (attempt 1 of 4); retrying in 60 s", lines


def test_action_does_not_print_an_error_body_that_quotes_a_secret(env, scripted):
    """A server that echoes the subject token, or answers with a page of its own: only the
    status is printed (twin: Ferry's own fixed error above is quoted)."""

    class Echo(Scripted):
        quote = staticmethod(lambda token: token)

        def do_POST(self):
            body = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            token = body["subject_token"][0]
            payload = json.dumps({"error": "invalid_grant", "error_description": f"bad token {self.quote(token)}"}).encode()
            self.send_response(400)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    # The whole token, its payload segment, and a 20-character piece of its signature.
    for quote in (lambda t: t, lambda t: t.split(".")[1], lambda t: t.split(".")[2][:20]):
        Echo.quote = staticmethod(quote)
        server, url = serve(Echo)
        try:
            r = run_action(env, inputs(env, url=url))
        finally:
            server.shutdown()
        assert r.code == 1
        assert r.lines[2:] == ["::error::Ferry refused the exchange (HTTP 400): invalid_grant"], r.stdout
        assert_masked_first(r, [REQUEST_TOKEN, Runner.served[-1][1]])


@pytest.mark.parametrize("name", ["GITHUB_PATH", "NODE_OPTIONS", "LD_PRELOAD", "path", "A-B", "1X", "X\nY"])
def test_action_refuses_to_export_into_a_reserved_or_malformed_variable(env, name):
    """Twin: FERRY_TOKEN is exported in the first test."""
    before = len(Runner.served)
    r = run_action(env, inputs(env, **{"export-env-var": name}))
    assert r.code == 1
    assert r.lines[1].startswith("::error::the export-env-var input must be a variable name"), r.stdout
    assert len(Runner.served) == before and r.outputs == {} and r.exported == {}


def test_action_yml_declares_what_the_entry_point_reads_and_writes():
    """action.yml and index.js agree: every input read is declared (and nothing else),
    every output written is declared; node24 runs index.js, then post.js."""
    meta = yaml.safe_load((ACTION.parent / "action.yml").read_text())
    code = ACTION.read_text()
    assert meta["runs"] == {"using": "node24", "main": "index.js", "post": "post.js"}
    assert set(meta["inputs"]) == set(re.findall(r"input\('([a-z-]+)'\)", code))
    assert set(meta["outputs"]) == set(re.findall(r"setOutput\('([a-z-]+)'", code))
    assert {n for n, i in meta["inputs"].items() if i["required"]} == {"url", "audience"}


def test_action_reports_a_refused_oidc_request_without_its_body(env):
    """Twin of the first test with another request token: the runner's endpoint refuses."""
    wrong = secrets.token_urlsafe(32)
    r = run_action(env, inputs(env), oidc={"ACTIONS_ID_TOKEN_REQUEST_URL": env.request_url,
                                          "ACTIONS_ID_TOKEN_REQUEST_TOKEN": wrong})
    assert r.code == 1
    assert r.lines == [f"::add-mask::{wrong}",
                       "::error::the runner's OIDC endpoint did not return a token (HTTP 401)"], r.stdout
    assert r.outputs == {}
