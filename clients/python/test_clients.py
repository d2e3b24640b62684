"""Unmodified standard clients against a real Ferry and a development issuer on loopback.

Every client obtains a token from Ferry the way a workload would; every token is then
verified the way a relying service would, with PyJWT's PyJWKClient and jose's
createRemoteJWKSet, each fetching Ferry's /jwks by itself. Nothing leaves 127.0.0.1.
"""

import http.server
import json
import os
import pathlib
import subprocess
import threading

import jwt
import pytest
import requests

from ferry_harness import BIN, ROOT, listening_socket, start_ferry

NODE = ROOT / "clients" / "node"
AUDIENCE = "https://relying.example.com"
TE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT = "urn:ietf:params:oauth:token-type:jwt"


class Env:
    pass


@pytest.fixture(scope="session")
def env(tmp_path_factory):
    for tool in [BIN / "ferry", BIN / "ferry-dev-idp"]:
        assert tool.exists(), f"{tool} missing: build with `cargo build --bins` first"
    e = Env()
    tmp = tmp_path_factory.mktemp("ferry")
    idp = subprocess.Popen(
        [BIN / "ferry-dev-idp", "serve", "--data-dir", tmp / "idp", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    e.idp_dir = tmp / "idp"
    e.idp = idp.stdout.readline().strip().rsplit(" ", 1)[-1]
    assert e.idp.startswith("http://127.0.0.1:"), e.idp
    sock = listening_socket()
    port = sock.getsockname()[1]
    e.url = f"http://127.0.0.1:{port}"
    e.token_url = f"{e.url}/token"
    e.jwks_url = f"{e.url}/jwks"
    (tmp / "ferry.yaml").write_text(
        f"""
issuer: {e.url}
data_dir: {tmp / "data"}
admin: {{ listen: "off" }}
limits:
  shutdown_delay: 0s   # stopped at the end of the session: no load balancer to wait for
outbound:
  allow_insecure_origins: ["{e.idp}"]
providers:
  - id: ci
    kind: oidc
    issuer: {e.idp}
    audiences: [{e.url}]
    condition: assertion.repository_owner_id == '65'
    mapping:
      subject: "'repo:' + assertion.repository"
      attributes:
        repository: assertion.repository
audiences:
  - audience: {AUDIENCE}
    ignore_unknown_scopes: true
    rules:
      - allow: provider == 'ci' && attribute.repository == 'acme/app'
        scopes: [read, write]
"""
    )
    ferry = start_ferry(sock, tmp / "ferry.yaml", log=tmp / "ferry.log")
    e.tmp = tmp
    yield e
    for p in (ferry, idp):
        p.terminate()
        p.wait(timeout=10)


def mint(e, owner_id="65"):
    out = subprocess.run(
        [BIN / "ferry-dev-idp", "mint", "--data-dir", e.idp_dir, "--sub", "repo:acme/app:ref:refs/heads/main",
         "--aud", e.url, "--claim", "repository=acme/app", "--claim", f'repository_owner_id="{owner_id}"'],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


def subject_file(e, name, owner_id="65"):
    path = e.tmp / name
    # Token files end with a newline; Google's libraries send it verbatim.
    path.write_text(mint(e, owner_id) + "\n")
    return path


def node(script, **env):
    out = subprocess.run(["node", NODE / script], capture_output=True, text=True, env={**os.environ, **env}, timeout=60)
    assert out.returncode == 0, f"{script} failed:\n{out.stderr}"
    return json.loads(out.stdout)


def verify(e, token):
    """Verifies a Ferry token with PyJWT and with jose, each fetching /jwks itself."""
    client = jwt.PyJWKClient(e.jwks_url)
    key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience=AUDIENCE, issuer=e.url)
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    assert claims["sub"] == "repo:acme/app"
    jose = node("verify.mjs", TOKEN=token, JWKS_URL=e.jwks_url, ISSUER=e.url, AUDIENCE=AUDIENCE)
    assert jose["payload"]["jti"] == claims["jti"]
    assert jose["protectedHeader"]["kid"] == key.key_id
    return claims


class Relying(http.server.BaseHTTPRequestHandler):
    """A relying service: accepts a request only with a valid Ferry bearer token."""

    jwks = None
    issuer = None

    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        try:
            token = auth.removeprefix("Bearer ")
            key = self.jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(token, key.key, algorithms=["ES256"], audience=AUDIENCE, issuer=self.issuer)
            body, status = json.dumps({"hello": claims["sub"]}).encode(), 200
        except Exception:  # noqa: BLE001 - any failure is a refusal
            body, status = b'{"error":"unauthorized"}', 401
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def relying(env):
    Relying.jwks = jwt.PyJWKClient(env.jwks_url)
    Relying.issuer = env.url
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Relying)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/resource"
    server.shutdown()


def external_account(e, source):
    return {
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": JWT,
        "token_url": e.token_url,
        "credential_source": source,
    }


def test_python_google_auth_file_source_and_a_relying_service(env, relying):
    from google.auth import identity_pool
    from google.auth.transport.requests import AuthorizedSession, Request

    creds = identity_pool.Credentials.from_info(external_account(env, {"file": str(subject_file(env, "gh.jwt"))}))
    creds.refresh(Request())
    verify(env, creds.token)
    r = AuthorizedSession(creds).get(relying)
    assert r.status_code == 200 and r.json() == {"hello": "repo:acme/app"}
    # Twin of the relying service's check: no token, no entry.
    assert requests.get(relying).status_code == 401


def test_python_google_auth_url_source(env):
    from google.auth import identity_pool
    from google.auth.transport.requests import Request

    token = mint(env)

    class Source(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.headers.get("Metadata-Flavor") == "ferry-test"
            self.send_response(200 if ok else 403)
            self.end_headers()
            self.wfile.write(token.encode() if ok else b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Source)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/token"
        creds = identity_pool.Credentials.from_info(
            external_account(env, {"url": url, "headers": {"Metadata-Flavor": "ferry-test"}})
        )
        creds.refresh(Request())
        verify(env, creds.token)
    finally:
        server.shutdown()


def test_python_google_auth_denied_by_the_condition(env):
    """Twin of the above: an owner the provider's condition does not pin is refused."""
    from google.auth import exceptions, identity_pool
    from google.auth.transport.requests import Request

    creds = identity_pool.Credentials.from_info(
        external_account(env, {"file": str(subject_file(env, "other.jwt", owner_id="66"))})
    )
    with pytest.raises(exceptions.OAuthError):
        creds.refresh(Request())


def test_openid_client_generic_grant(env):
    out = node("openid.mjs", ISSUER=env.url, TOKEN_URL=env.token_url, AUDIENCE=AUDIENCE,
               SUBJECT_TOKEN_FILE=str(subject_file(env, "oidc.jwt")))
    assert out["token_type"].lower() == "bearer"
    assert out["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    claims = verify(env, out["access_token"])
    assert claims["scope"] == "read"
    assert claims["client_id"] == "openid-client-test"


def test_authlib_oauth2_session_fetch_token(env):
    from authlib.integrations.requests_client import OAuth2Session

    session = OAuth2Session(client_id="authlib-test", token_endpoint_auth_method="none")
    token = session.fetch_token(
        env.token_url,
        grant_type=TE,
        subject_token=mint(env),
        subject_token_type=JWT,
        audience=AUDIENCE,
    )
    assert token["token_type"] == "Bearer" and isinstance(token["expires_in"], int)
    verify(env, token["access_token"])


def test_schemathesis_finds_no_server_error_and_no_schema_violation(env):
    out = subprocess.run(
        ["schemathesis", "run", str(ROOT / "openapi" / "openapi.yaml"), "--url", env.url,
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
         "--max-examples", "40", "--seed", "1", "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=env.tmp,
    )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    print(out.stdout[-3000:])
