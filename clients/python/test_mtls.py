"""Certificate-bound tokens (RFC 8705) with clients Ferry did not write: Python `requests`
(cert=) and Node's `https` module (cert/key) exchange over TLS with a client certificate
made by the `openssl` command line; the token's `cnf.x5t#S256` is the SHA-256 of the
certificate's DER as Python's `ssl` and `hashlib` compute it. An audience with
`require_mtls` refuses the same request without a certificate."""

import base64
import hashlib
import json
import ssl
import subprocess
import time

import jwt
import pytest
import requests

from ferry_harness import ACTIVATE, BIN, KEK, ROOT, listening_socket

import os
import sys

NODE = ROOT / "clients" / "node"
AUDIENCE = "https://mtls.example.com"


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def x5t(cert_pem_path):
    der = ssl.PEM_cert_to_DER_cert(open(cert_pem_path).read())
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mtls")
    # Ferry's server certificate (for 127.0.0.1) and a client's, both by openssl.
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
            "-subj", "/CN=ferry", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", tmp / "server.key", "-out", tmp / "server.crt")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=workload",
            "-keyout", tmp / "client.key", "-out", tmp / "client.crt")
    idp = subprocess.Popen([BIN / "ferry-dev-idp", "serve", "--data-dir", tmp / "idp", "--listen", "127.0.0.1:0"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = ""
    while "listening on" not in line:
        line = idp.stdout.readline()
        assert line, "ferry-dev-idp exited"
    issuer = line.strip().rsplit(" ", 1)[-1]
    sock = listening_socket()
    url = f"https://127.0.0.1:{sock.getsockname()[1]}"
    (tmp / "ferry.yaml").write_text(f"""
issuer: {url}
data_dir: {tmp / "data"}
admin: {{ listen: "off" }}
tls: {{ cert_file: {tmp / "server.crt"}, key_file: {tmp / "server.key"}, client_auth: optional }}
providers:
  - id: dev
    issuer: {issuer}
    audiences: [{url}]
    jwks: {{ file: {tmp / "idp" / "jwks.json"} }}
audiences:
  - audience: {AUDIENCE}
    require_mtls: true
    rules:
      - allow: provider == 'dev'
        scopes: [read]
""")
    ferry = subprocess.Popen([sys.executable, "-c", ACTIVATE, str(sock.fileno()), BIN / "ferry", "serve",
                              "--config", tmp / "ferry.yaml"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(sock.fileno(),),
                             env={**os.environ, "FERRY_KEK": KEK, "RUST_LOG": "warn"})
    sock.close()
    deadline = time.time() + 30
    while True:
        assert ferry.poll() is None, "ferry exited"
        try:
            if requests.get(f"{url}/readyz", verify=tmp / "server.crt", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            assert time.time() < deadline, "ferry did not come up"
            time.sleep(0.05)
    subject = subprocess.run([BIN / "ferry-dev-idp", "mint", "--data-dir", tmp / "idp", "--sub", "workload",
                              "--aud", url], check=True, capture_output=True, text=True).stdout.strip()
    (tmp / "subject.jwt").write_text(subject + "\n")

    class E:
        pass

    e = E()
    e.tmp, e.url, e.subject = tmp, url, subject
    yield e
    for p in (ferry, idp):
        p.terminate()
        p.wait(timeout=10)


def form(e):
    return {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": e.subject,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "audience": AUDIENCE}


def test_python_requests_with_a_client_certificate_gets_a_bound_token(env):
    r = requests.post(f"{env.url}/token", data=form(env), verify=env.tmp / "server.crt",
                      cert=(env.tmp / "client.crt", env.tmp / "client.key"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["cnf"] == {"x5t#S256": x5t(env.tmp / "client.crt")}


def test_python_requests_without_a_certificate_is_refused_where_mtls_is_required(env):
    r = requests.post(f"{env.url}/token", data=form(env), verify=env.tmp / "server.crt")
    assert r.status_code == 400, r.text
    assert r.json()["error_description"] == "a client certificate is required"


@pytest.mark.parametrize("with_cert", [True, False])
def test_node_https_with_cert_and_key(env, with_cert):
    extra = {"CERT_FILE": str(env.tmp / "client.crt"), "KEY_FILE": str(env.tmp / "client.key")} if with_cert else {}
    out = subprocess.run(["node", NODE / "mtls.mjs"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "TOKEN_URL": f"{env.url}/token", "CA_FILE": str(env.tmp / "server.crt"),
                              "SUBJECT_TOKEN_FILE": str(env.tmp / "subject.jwt"), "AUDIENCE": AUDIENCE, **extra})
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    if with_cert:
        assert res["status"] == 200, res
        claims = jwt.decode(res["body"]["access_token"], options={"verify_signature": False})
        assert claims["cnf"] == {"x5t#S256": x5t(env.tmp / "client.crt")}
    else:
        assert res["status"] == 400, res
