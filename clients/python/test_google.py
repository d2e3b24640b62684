"""Google's client libraries, unmodified, against a real Ferry: each reads a credential file
`ferry cred-config` wrote, fed as it is (file, URL, executable and certificate sources;
jwt, id_token, saml2 and mtls subject tokens; client credentials), and downscoping
reaches Ferry at https://sts.<universe_domain>/v1/token with nothing overridden.

Ferry serves TLS for `sts.ferry.test` with a certificate from a test CA made here by the
`openssl` command line. The clients reach that name through the test kit's CONNECT proxy
(`ferry-connect-proxy`, which tunnels only that name, to Ferry on loopback: no DNS, no
internet) named in HTTPS_PROXY, and trust the CA through their standard variables:
REQUESTS_CA_BUNDLE (Python), NODE_EXTRA_CA_CERTS (Node), SSL_CERT_FILE (Rust).
"""

import base64
import hashlib
import http.server
import json
import os
import ssl
import stat
import subprocess
import threading
import time

import jwt
import pytest
import requests

from ferry_harness import BIN, ROOT, listening_socket, start_ferry, stop

NODE = ROOT / "clients" / "node"
RUST_CLIENT = os.environ.get("FERRY_RUST_CLIENT", str(ROOT / "target" / "clients-rust" / "debug" / "ferry-client-google-cloud-auth"))
DOMAIN = "ferry.test"
STS = f"https://sts.{DOMAIN}"
AUDIENCE = "https://relying.example.com"
CLIENT_AUDIENCE = "https://client-only.example.com"
CLIENT_SECRET = "a-registered-client-secret-for-the-test"


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(d):
    """A test CA; Ferry's server certificate for sts.ferry.test (and 127.0.0.1); a client
    certificate for the certificate source. All by openssl."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"]
    openssl("req", "-x509", *ec, "-subj", "/CN=Ferry Test CA", "-keyout", d / "ca.key", "-out", d / "ca.crt",
            "-addext", "basicConstraints=critical,CA:true", "-addext", "keyUsage=critical,keyCertSign")
    for name, cn, ext in [
        ("server", f"sts.{DOMAIN}", [f"subjectAltName=DNS:sts.{DOMAIN},IP:127.0.0.1", "extendedKeyUsage=serverAuth"]),
        ("client", "workload", ["extendedKeyUsage=clientAuth"]),
    ]:
        adds = [a for e in ["basicConstraints=critical,CA:false", *ext] for a in ("-addext", e)]
        openssl("req", "-x509", *ec, "-subj", f"/CN={cn}", "-CA", d / "ca.crt", "-CAkey", d / "ca.key",
                *adds, "-keyout", d / f"{name}.key", "-out", d / f"{name}.crt")


class Env:
    pass


@pytest.fixture(scope="module")
def g(tmp_path_factory, request):
    for tool in ["ferry", "ferry-dev-idp", "ferry-connect-proxy"]:
        assert (BIN / tool).exists(), f"{BIN / tool} missing: build with `cargo build --bins` first"
    e = Env()
    e.tmp = tmp = tmp_path_factory.mktemp("google")
    make_pki(tmp)
    e.ca = str(tmp / "ca.crt")
    idp = subprocess.Popen([BIN / "ferry-dev-idp", "serve", "--data-dir", tmp / "idp", "--listen", "127.0.0.1:0"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    request.addfinalizer(lambda: stop(idp))
    e.idp_dir = tmp / "idp"
    line = ""
    while "listening on" not in line:
        line = idp.stdout.readline()
        assert line, "ferry-dev-idp exited"
    idp_url = line.strip().rsplit(" ", 1)[-1]
    sock = listening_socket()
    e.port = sock.getsockname()[1]
    e.direct = f"https://127.0.0.1:{e.port}"
    (tmp / "secret").write_text(CLIENT_SECRET + "\n")
    secret_sha256 = hashlib.sha256(CLIENT_SECRET.encode()).hexdigest()
    (tmp / "ferry.yaml").write_text(f"""
issuer: {STS}
data_dir: {tmp / "data"}
admin: {{ listen: "off" }}
tls: {{ cert_file: {tmp / "server.crt"}, key_file: {tmp / "server.key"}, client_auth: optional }}
limits:
  shutdown_delay: 0s
outbound:
  allow_insecure_origins: ["{idp_url}"]
clients:
  - {{ id: ci-client, auth: client_secret_basic, secret_sha256: {secret_sha256} }}
providers:
  - id: ci
    kind: oidc
    issuer: {idp_url}
    audiences: [{STS}]
    mapping:
      subject: "'repo:' + assertion.repository"
  - id: corp
    kind: saml
    entity_id: {idp_url}/saml
    metadata: {{ file: {tmp / "idp" / "saml-metadata.xml"} }}
    audiences: [{STS}]
    mapping:
      subject: assertion.subject
  - id: mesh
    kind: x509
    trust_anchors: [{tmp / "ca.crt"}]
audiences:
  - audience: {AUDIENCE}
    ignore_unknown_scopes: true   # Node's and Rust's clients always send cloud-platform
    rules:
      - allow: subject in ['repo:acme/app', 'alice@example.com', 'workload']
        scopes: [read]
  - audience: {CLIENT_AUDIENCE}
    ignore_unknown_scopes: true
    rules:
      - allow: client_id == 'ci-client'
        scopes: [read]
""")
    ferry = start_ferry(sock, tmp / "ferry.yaml", log=tmp / "ferry.log", ca=e.ca)
    request.addfinalizer(lambda: stop(ferry))
    e.proxy_log = tmp / "proxy.log"
    with open(e.proxy_log, "w") as log:
        proxy = subprocess.Popen([BIN / "ferry-connect-proxy", "--map", f"sts.{DOMAIN}:443=127.0.0.1:{e.port}"],
                                 stdout=log, stderr=subprocess.STDOUT)
        request.addfinalizer(lambda: stop(proxy))
    deadline = time.time() + 30
    while "listening on" not in e.proxy_log.read_text():
        assert proxy.poll() is None, "ferry-connect-proxy exited"
        assert time.time() < deadline, "ferry-connect-proxy did not start"
        time.sleep(0.02)
    e.proxy = e.proxy_log.read_text().split()[2]
    e.jwks = jwt.PyJWKSet.from_dict(requests.get(f"{e.direct}/jwks", verify=e.ca, timeout=5).json())
    yield e


def client_env(e, credentials, **extra):
    """The environment of a client process: the credential file, the proxy, the CA."""
    return {
        **os.environ,
        "GOOGLE_APPLICATION_CREDENTIALS": str(credentials),
        "HTTPS_PROXY": e.proxy, "https_proxy": e.proxy, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1",
        "REQUESTS_CA_BUNDLE": e.ca, "NODE_EXTRA_CA_CERTS": e.ca, "SSL_CERT_FILE": e.ca,
        **extra,
    }


@pytest.fixture
def proxied(g, monkeypatch):
    """This process's environment as client_env's, for the Python clients."""
    for k, v in client_env(g, "").items():
        if k != "GOOGLE_APPLICATION_CREDENTIALS":
            monkeypatch.setenv(k, v)


def mint(e):
    return subprocess.run(
        [BIN / "ferry-dev-idp", "mint", "--data-dir", e.idp_dir, "--sub", "ci", "--aud", STS,
         "--claim", "repository=acme/app"], check=True, capture_output=True, text=True).stdout.strip()


def cred_config(e, name, *args, url=STS, audience=AUDIENCE):
    """`ferry cred-config` as an operator runs it; returns the file's path."""
    out = e.tmp / name
    r = subprocess.run([BIN / "ferry", "cred-config", "--url", url, "--audience", audience, "--output-file", out,
                        *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert CLIENT_SECRET not in r.stdout + r.stderr, "the secret is never printed"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    return out


def verify(e, token, sub):
    """Ferry's signature, issuer and audience, with PyJWT against Ferry's /jwks."""
    key = e.jwks[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience=[AUDIENCE, CLIENT_AUDIENCE], issuer=STS)
    assert claims["sub"] == sub
    return claims


def python_credentials(path):
    """The credentials of the file, by google-auth's loader for its type."""
    from google.auth import identity_pool, pluggable

    source = json.loads(path.read_text())["credential_source"]
    kind = pluggable if "executable" in source else identity_pool
    return kind.Credentials.from_file(str(path))


def python_token(path):
    from google.auth.transport.requests import Request

    creds = python_credentials(path)
    creds.refresh(Request())
    return creds.token


def node_token(e, path, script="google.mjs", **extra):
    out = subprocess.run(["node", NODE / script], capture_output=True, text=True, timeout=60,
                         env=client_env(e, path, **extra))
    assert out.returncode == 0, f"{script} failed:\n{out.stderr}"
    return json.loads(out.stdout)


def rust_token(e, path, **extra):
    assert os.path.exists(RUST_CLIENT), f"{RUST_CLIENT} missing: scripts/clients-test.sh builds it"
    out = subprocess.run([RUST_CLIENT], capture_output=True, text=True, timeout=60, env=client_env(e, path, **extra))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["access_token"]


def connects(e, target, at_least):
    """Whether the proxy reported at least AT_LEAST tunnels to TARGET (it reports them
    every 50 ms: waits up to 5 s)."""
    deadline = time.time() + 5
    while e.proxy_log.read_text().count(f"CONNECT {target}\n") < at_least:
        if time.time() > deadline:
            return False
        time.sleep(0.05)
    return True


def every_client(e, path, sub, **extra):
    """Python google-auth, npm google-auth-library and Rust google-cloud-auth each read
    the file and get a token from Ferry through the proxy."""
    before = e.proxy_log.read_text().count(f"CONNECT sts.{DOMAIN}:443\n")
    # Each client sends its own cloud-platform scope; ignore_unknown_scopes drops it and
    # the rule's scope is granted, whichever client asked.
    for token in (python_token(path), node_token(e, path, **extra)["access_token"], rust_token(e, path, **extra)):
        assert verify(e, token, sub)["scope"] == "read"
    assert connects(e, f"sts.{DOMAIN}:443", before + 3), "every client went through the proxy to sts.ferry.test"


def test_a_file_source_for_python_node_and_rust(g, proxied):
    (g.tmp / "sub.jwt").write_text(mint(g) + "\n")
    path = cred_config(g, "file.json", "--credential-source-file", g.tmp / "sub.jwt", "--universe-domain", DOMAIN)
    doc = json.loads(path.read_text())
    assert doc["token_url"] == f"{STS}/token" and doc["universe_domain"] == DOMAIN
    every_client(g, path, "repo:acme/app")


def test_a_url_source_with_headers_and_a_json_format(g, proxied):
    token = mint(g)

    class Source(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.headers.get("Metadata-Flavor") == "ferry-test"
            self.send_response(200 if ok else 403)
            self.end_headers()
            self.wfile.write(json.dumps({"value": token}).encode() if ok else b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Source)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        path = cred_config(g, "url.json", "--credential-source-url", f"http://127.0.0.1:{server.server_address[1]}/t",
                           "--credential-source-headers", "Metadata-Flavor=ferry-test",
                           "--credential-source-type", "json", "--credential-source-field-name", "value")
        every_client(g, path, "repo:acme/app")
    finally:
        server.shutdown()


def test_an_executable_source(g, proxied, monkeypatch):
    (g.tmp / "exe.jwt").write_text(mint(g))
    script = g.tmp / "get-token.sh"
    script.write_text(f"""#!/bin/sh
printf '{{"version": 1, "success": true, "token_type": "urn:ietf:params:oauth:token-type:jwt", "id_token": "%s", "expiration_time": %d}}' "$(cat {g.tmp / "exe.jwt"})" $(( $(date +%s) + 300 ))
""")
    script.chmod(0o755)
    path = cred_config(g, "exe.json", "--executable-command", str(script), "--executable-timeout-millis", "10000")
    # The libraries run an executable only when this says they may (Google's rule).
    monkeypatch.setenv("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1")
    every_client(g, path, "repo:acme/app", GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES="1")


def test_id_token_and_saml2_subject_token_types(g, proxied):
    (g.tmp / "id.jwt").write_text(mint(g))
    path = cred_config(g, "id.json", "--credential-source-file", g.tmp / "id.jwt", "--subject-token-type", "id_token")
    assert json.loads(path.read_text())["subject_token_type"] == "urn:ietf:params:oauth:token-type:id_token"
    verify(g, python_token(path), "repo:acme/app")
    saml = subprocess.run(
        [BIN / "ferry-dev-idp", "mint-saml", "--data-dir", g.idp_dir, "--subject", "alice@example.com",
         "--audience", STS, "--recipient", f"{STS}/token"], check=True, capture_output=True, text=True).stdout.strip()
    (g.tmp / "assertion.saml").write_text(saml)
    path = cred_config(g, "saml.json", "--credential-source-file", g.tmp / "assertion.saml",
                       "--subject-token-type", "saml2")
    assert json.loads(path.read_text())["subject_token_type"] == "urn:ietf:params:oauth:token-type:saml2"
    every_client(g, path, "alice@example.com")


def test_client_credentials_and_their_twin_with_a_wrong_secret(g, proxied):
    from google.auth import exceptions

    (g.tmp / "c.jwt").write_text(mint(g))
    (g.tmp / "wrong").write_text("not-the-secret\n")
    args = ["--credential-source-file", g.tmp / "c.jwt", "--client-id", "ci-client", "--client-secret-file"]
    good = cred_config(g, "client.json", *args, g.tmp / "secret", audience=CLIENT_AUDIENCE)
    assert json.loads(good.read_text())["client_secret"] == CLIENT_SECRET
    claims = verify(g, python_token(good), "repo:acme/app")
    assert claims["client_id"] == "ci-client" and claims["aud"] == CLIENT_AUDIENCE
    verify(g, node_token(g, good)["access_token"], "repo:acme/app")
    verify(g, rust_token(g, good), "repo:acme/app")
    bad = cred_config(g, "client-bad.json", *args, g.tmp / "wrong", audience=CLIENT_AUDIENCE)
    with pytest.raises(exceptions.OAuthError, match="invalid_client"):
        python_token(bad)


def test_a_certificate_source_over_mutual_tls(g):
    """The certificate source: the libraries connect with the client certificate and send
    its chain as an mtls subject token; Ferry's x509 provider trusts the test CA. The
    connection goes straight to 127.0.0.1 (Node builds its own TLS agent for the
    certificate, which takes no proxy)."""
    path = cred_config(g, "cert.json", "--credential-cert-path", g.tmp / "client.crt",
                       "--credential-cert-private-key-path", g.tmp / "client.key",
                       "--credential-cert-configuration-output-file", g.tmp / "cert-config.json", url=g.direct)
    doc = json.loads(path.read_text())
    assert doc["subject_token_type"] == "urn:ietf:params:oauth:token-type:mtls"
    assert doc["credential_source"] == {"certificate": {"certificate_config_location": str(g.tmp / "cert-config.json")}}
    der = ssl.PEM_cert_to_DER_cert((g.tmp / "client.crt").read_text())
    x5t = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    env = {"REQUESTS_CA_BUNDLE": g.ca, "NODE_EXTRA_CA_CERTS": g.ca}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        claims = verify(g, python_token(path), "workload")
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert claims["cnf"] == {"x5t#S256": x5t}, "bound to the certificate it proved"
    out = subprocess.run(["node", NODE / "google.mjs"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **env, "GOOGLE_APPLICATION_CREDENTIALS": str(path)})
    assert out.returncode == 0, out.stderr
    assert verify(g, json.loads(out.stdout)["access_token"], "workload")["cnf"] == {"x5t#S256": x5t}
    # Rust google-cloud-auth (1.19) has no certificate source: it refuses the file
    # rather than exchanging anything (README, "Google client libraries").
    out = subprocess.run([RUST_CLIENT], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "GOOGLE_APPLICATION_CREDENTIALS": str(path), "SSL_CERT_FILE": g.ca})
    assert out.returncode != 0 and "access_token" not in out.stdout
    assert "did not match any variant of untagged enum CredentialSourceFile" in out.stderr, out.stderr


def boundary():
    from google.auth import downscoped

    rule = downscoped.AccessBoundaryRule(
        available_resource="//storage.googleapis.com/projects/_/buckets/bucket-123",
        available_permissions=["inRole:roles/storage.objectViewer"],
        availability_condition=downscoped.AvailabilityCondition(
            expression="resource.name.startsWith('projects/_/buckets/bucket-123/objects/customer-a')",
            title="customer-a-objects",
        ),
    )
    return downscoped.CredentialAccessBoundary(rules=[rule])


def test_python_downscoped_credentials_reach_ferry_by_universe_domain(g, proxied):
    """google.auth.downscoped.Credentials, unmodified, no transport override: it posts to
    https://sts.ferry.test/v1/token because the source credentials' universe domain says
    ferry.test."""
    from google.auth import downscoped, exceptions, identity_pool
    from google.auth.transport.requests import Request

    (g.tmp / "ds.jwt").write_text(mint(g))
    path = cred_config(g, "ds.json", "--credential-source-file", g.tmp / "ds.jwt", "--universe-domain", DOMAIN)
    source = identity_pool.Credentials.from_file(str(path))
    creds = downscoped.Credentials(source_credentials=source, credential_access_boundary=boundary(),
                                   universe_domain=source.universe_domain)
    creds.refresh(Request())
    claims = verify(g, creds.token, "repo:acme/app")
    rule = claims["access_boundaries"][0]["accessBoundaryRules"][0]
    assert rule["availableResource"] == "//storage.googleapis.com/projects/_/buckets/bucket-123"
    assert rule["availabilityCondition"]["title"] == "customer-a-objects"
    assert claims["aud"] == AUDIENCE, "the parent's audience is kept"
    # Twin: without the universe domain it would post to Google's STS, which the proxy
    # does not tunnel (nothing leaves the machine).
    lost = downscoped.Credentials(source_credentials=source, credential_access_boundary=boundary())
    with pytest.raises(exceptions.TransportError):
        lost.refresh(Request())
    assert connects(g, "sts.googleapis.com:443", 1)


def test_node_downscoped_client_reaches_ferry_by_universe_domain(g):
    (g.tmp / "node-ds.jwt").write_text(mint(g))
    path = cred_config(g, "node-ds.json", "--credential-source-file", g.tmp / "node-ds.jwt", "--universe-domain", DOMAIN)
    out = node_token(g, path, script="downscoped.mjs")
    claims = verify(g, out["access_token"], "repo:acme/app")
    rule = claims["access_boundaries"][0]["accessBoundaryRules"][0]
    assert rule["availablePermissions"] == ["inRole:roles/storage.objectViewer"]
    assert rule["availabilityCondition"]["title"] == "customer-a-objects"
    # Twin: the source token it narrowed carries no boundary and lives at least as long.
    parent = verify(g, out["parent"], "repo:acme/app")
    assert "access_boundaries" not in parent
    assert claims["exp"] <= parent["exp"]


def test_cred_config_refuses_to_overwrite_without_force(g):
    (g.tmp / "x.jwt").write_text("x")
    args = ["--credential-source-file", g.tmp / "x.jwt"]
    path = cred_config(g, "once.json", *args)
    r = subprocess.run([BIN / "ferry", "cred-config", "--url", STS, "--audience", AUDIENCE, "--output-file", path,
                        *args, "--universe-domain", DOMAIN], capture_output=True, text=True)
    assert r.returncode != 0 and "--force" in r.stderr
    assert "universe_domain" not in path.read_text()
    cred_config(g, "once.json", *args, "--universe-domain", DOMAIN, "--force")
    assert json.loads(path.read_text())["universe_domain"] == DOMAIN
