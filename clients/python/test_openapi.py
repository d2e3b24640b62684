"""The OpenAPI documents (openapi/openapi.yaml, the public listener; openapi/admin.yaml, the
admin listener) against a real Ferry on loopback.

Each document is first validated as OpenAPI 3.1 (openapi-spec-validator), and every response
example in it against its schema. Then every request example of every operation is sent
to Ferry — a request body example with the header parameters' examples of the same name
and its `x-headers`; an operation without a body with each of its parameters' examples —
and the answer must have the example's `x-status` and agree with the document (openapi-core
validates status, headers and body). `{{name}}` placeholders become values made at run
time: subject tokens minted by the development issuer, DPoP proofs, client and
service-account assertions, tokens Ferry issued. An operation without any example gets a
bare request. Nothing leaves 127.0.0.1.
"""

import base64
import copy
import hashlib
import json
import re
import secrets
import subprocess
import time
import uuid

import jwt
import pytest
import requests
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec

from ferry_harness import BIN, ROOT, listening_socket, start_ferry, stop

AUDIENCE = "https://relying.example.com"
TE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT = "urn:ietf:params:oauth:token-type:jwt"
REFERENCE = "urn:ferry:params:oauth:token-type:reference_token"
SPLIT = "urn:ferry:token-type:split"
DOCS = {"public": ROOT / "openapi" / "openapi.yaml", "admin": ROOT / "openapi" / "admin.yaml"}
METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]
SECRET = secrets.token_urlsafe(32)
ADMIN_TOKEN = secrets.token_urlsafe(32)


def load(name):
    return yaml.safe_load(DOCS[name].read_text())


def operations(doc):
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def resolve(doc, node):
    """NODE with every local $ref replaced by what it points to (the documents have no
    recursive schemas)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return resolve(doc, target)
        return {k: resolve(doc, v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(doc, v) for v in node]
    return node


def request_cases(doc):
    """Every request the examples of DOC describe: (path, method, name, body media type,
    body, headers, path parameters, expected status, expected `error` code)."""
    cases = []
    for path, method, op in operations(doc):
        op = resolve(doc, op)
        params = op.get("parameters", [])
        content = op.get("requestBody", {}).get("content", {})

        def with_params(name):
            headers, path_params = {}, {}
            for p in params:
                ex = p.get("examples", {}).get(name)
                if ex is not None:
                    (headers if p["in"] == "header" else path_params)[p["name"]] = ex["value"]
            return headers, path_params

        if content:
            for media, body in content.items():
                for name, ex in body.get("examples", {}).items():
                    headers, path_params = with_params(name)
                    headers.update(ex.get("x-headers", {}))
                    cases.append((path, method, name, media, ex["value"], headers, path_params, ex["x-status"], ex.get("x-error")))
            assert any(c[0] == path and c[1] == method for c in cases), f"{method} {path}: no request example"
            continue
        names = {n: ex for p in params for n, ex in p.get("examples", {}).items()}
        for name, ex in names.items():
            headers, path_params = with_params(name)
            cases.append((path, method, name, None, None, headers, path_params, ex["x-status"], ex.get("x-error")))
        if not names:
            codes = sorted(int(c) for c in op["responses"])
            expected = ([c for c in codes if c < 400] or codes)[0]
            secured = op.get("security", doc.get("security")) and {} not in op.get("security", doc.get("security", []))
            if secured:
                cases.append((path, method, "withoutCredentials", None, None, {}, {}, 401, "invalid_client"))
                cases.append((path, method, "withCredentials", None, None, {"Authorization": "{{reader_basic}}"}, {}, expected, None))
            else:
                cases.append((path, method, "bare", None, None, {}, {}, expected, None))
    return cases


CASES = [(doc, *case) for doc in DOCS for case in request_cases(load(doc))]


class Env:
    pass


def ec_key():
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return pem, public


def self_signed_ca(tmp):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID
    import datetime

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ci test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = tmp / "ci-ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory, request):
    for tool in [BIN / "ferry", BIN / "ferry-dev-idp"]:
        assert tool.exists(), f"{tool} missing: build with `cargo build --bins` first"
    e = Env()
    tmp = tmp_path_factory.mktemp("openapi")
    idp = subprocess.Popen(
        [BIN / "ferry-dev-idp", "serve", "--data-dir", tmp / "idp", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    request.addfinalizer(lambda: stop(idp))
    e.idp_dir = tmp / "idp"
    e.idp = idp.stdout.readline().strip().rsplit(" ", 1)[-1]
    assert e.idp.startswith("http://127.0.0.1:"), e.idp
    sock, admin = listening_socket(), listening_socket()
    e.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    e.admin_url = f"http://127.0.0.1:{admin.getsockname()[1]}"
    e.sa_key, sa_jwk = ec_key()
    e.client_key, client_jwk = ec_key()
    e.dpop_key, e.dpop_jwk = ec_key()
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    (tmp / "admin-tokens").write_text(hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest() + "\n")
    (tmp / "ferry.yaml").write_text(
        f"""
issuer: {e.url}
data_dir: {tmp / "data"}
admin:
  listen: 127.0.0.1:0   # the socket passed to Ferry is used instead
  bearer_token_hashes_file: {tmp / "admin-tokens"}
limits:
  shutdown_delay: 0s
dpop:
  require_nonce: true   # so that DPoP-Nonce and use_dpop_nonce are exercised too
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
service_accounts:
  - id: builder
    jwks: {{ inline: {json.dumps({"keys": [{**sa_jwk, "kid": "sa-1", "alg": "ES256", "use": "sig"}]})} }}
clients:
  - {{ id: ci-basic, auth: client_secret_basic, secret_sha256: {digest} }}
  - {{ id: ci-post, auth: client_secret_post, secret_sha256: {digest} }}
  - {{ id: ci-jwt, auth: private_key_jwt, jwks: {{ inline: {json.dumps({"keys": [{**client_jwk, "kid": "c-1", "alg": "ES256"}]})} }} }}
  - {{ id: gateway, auth: client_secret_basic, secret_sha256: {digest}, introspect: true }}
  - {{ id: reader, auth: client_secret_basic, secret_sha256: {digest}, revocations: true }}
  - {{ id: ci-mtls, auth: tls_client_auth, tls_client_auth_san_dns: ci.example.com, ca_file: {self_signed_ca(tmp)} }}
audiences:
  - audience: {AUDIENCE}
    ignore_unknown_scopes: true
    rules:
      - allow: provider == 'ci' && attribute.repository == 'acme/app'
        scopes: [read, write]
      - allow: provider == 'service-account' && subject == 'builder'
        scopes: [read]
"""
    )
    ferry = start_ferry(sock, tmp / "ferry.yaml", log=tmp / "ferry.log", admin=admin)
    request.addfinalizer(lambda: stop(ferry))
    e.tmp = tmp
    e.values = setup_values(e)
    e.api = {"public": openapi("public", e.url), "admin": openapi("admin", e.admin_url)}
    yield e


def mint(e, repository="acme/app"):
    out = subprocess.run(
        [BIN / "ferry-dev-idp", "mint", "--data-dir", e.idp_dir, "--sub", f"repo:{repository}:ref:refs/heads/main",
         "--aud", e.url, "--claim", f"repository={repository}", "--claim", 'repository_owner_id="65"'],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


def assertion(e, key, subject, kid):
    now = int(time.time())
    claims = {"iss": subject, "sub": subject, "aud": e.url, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


def dpop_proof(e, nonce=True):
    claims = {"htm": "POST", "htu": f"{e.url}/token", "iat": int(time.time()), "jti": str(uuid.uuid4())}
    if nonce:  # every /token response carries a fresh one
        claims["nonce"] = requests.post(f"{e.url}/token", timeout=10).headers["DPoP-Nonce"]
    return jwt.encode(claims, e.dpop_key, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": e.dpop_jwk})


def basic(client):
    return "Basic " + base64.b64encode(f"{client}:{SECRET}".encode()).decode()


def issue(e, **extra):
    form = {"grant_type": TE, "subject_token": mint(e), "subject_token_type": JWT, "audience": AUDIENCE, **extra}
    r = requests.post(f"{e.url}/token", data=form, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def setup_values(e):
    """What each placeholder becomes: a function (a fresh value on every use: assertions
    and proofs are single use) or a fixed value."""
    etag = requests.get(f"{e.url}/jwks", timeout=10).headers["ETag"]
    access_token = issue(e)
    return {
        "subject_token": lambda: mint(e),
        "actor_token": lambda: mint(e, "acme/deployer"),
        "access_token": access_token,
        "reference_token": lambda: issue(e, requested_token_type=REFERENCE),
        "split_token": lambda: issue(e, requested_token_type=SPLIT),
        "revocable_token": lambda: issue(e, client_id="ci-post", client_secret=SECRET),
        "admin_revocable_token": lambda: issue(e),
        "dpop_proof": lambda: dpop_proof(e),
        "dpop_proof_without_nonce": lambda: dpop_proof(e, nonce=False),
        "client_assertion": lambda: assertion(e, e.client_key, "ci-jwt", "c-1"),
        "service_account_assertion": lambda: assertion(e, e.sa_key, "builder", "sa-1"),
        "client_secret": SECRET,
        "ci_basic": basic("ci-basic"),
        "gateway_basic": basic("gateway"),
        "reader_basic": basic("reader"),
        "jwks_etag": etag,
        "idp": e.idp,
        "issuer": e.url,
    }


PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def fill(values, node):
    if isinstance(node, dict):
        return {k: fill(values, v) for k, v in node.items()}
    if isinstance(node, list):
        return [fill(values, v) for v in node]
    if isinstance(node, str):
        def one(m):
            v = values[m.group(1)]
            return v() if callable(v) else v
        return PLACEHOLDER.sub(one, node)
    return node


# Bodies that are not JSON: a JWT, the metrics exposition. openapi-core hands unknown media
# types over as bytes; the documents describe them as strings.
TEXT = {m: lambda b, **_params: b.decode() for m in ["application/jwt", "application/token-introspection+jwt", "application/openmetrics-text"]}


def openapi(doc, url):
    """The document as openapi-core reads it, its server replaced by URL (validated once,
    by the first test)."""
    spec = load(doc)
    spec["servers"] = [{"url": url}]
    return OpenAPI.from_dict(spec, config=Config(extra_media_type_deserializers=TEXT, spec_validator_cls=None))


def test_the_documents_are_valid_openapi_and_their_response_examples_fit_their_schemas():
    for name in DOCS:
        doc = load(name)
        validate_spec(doc)
        checked = 0
        for path, method, op in operations(doc):
            for status, response in resolve(doc, op)["responses"].items():
                for media, content in response.get("content", {}).items():
                    for ex_name, ex in content.get("examples", {}).items():
                        OAS31Validator(content["schema"]).validate(ex["value"])
                        checked += 1
        assert checked > 0 or name == "admin"


def test_every_operation_has_a_request():
    for doc in DOCS:
        ops = {(p, m) for p, m, _ in operations(load(doc))}
        sent = {(c[1], c[2]) for c in CASES if c[0] == doc}
        assert ops == sent


@pytest.mark.parametrize(
    "doc,path,method,name,media,body,headers,path_params,status,error", CASES,
    ids=[f"{c[0]}:{c[2].upper()}:{c[1]}:{c[3]}" for c in CASES],
)
def test_example(env, doc, path, method, name, media, body, headers, path_params, status, error):
    base = env.url if doc == "public" else env.admin_url
    values = env.values
    url = base + fill(values, re.sub(r"\{(\w+)\}", lambda m: path_params[m.group(1)], path))
    headers = fill(values, copy.deepcopy(headers))
    if doc == "admin":  # the admin listener requires a bearer token here
        headers.setdefault("Authorization", f"Bearer {ADMIN_TOKEN}")
    body = fill(values, copy.deepcopy(body))
    kwargs = {}
    if media == "application/json":
        kwargs["data"] = json.dumps(body)
        headers.setdefault("Content-Type", media)
    elif media == "application/x-www-form-urlencoded":
        kwargs["data"] = body
        if "Content-Type" in headers:  # sent as a form, labelled otherwise
            kwargs["data"] = requests.models.RequestEncodingMixin._encode_params(body)
    r = requests.request(method.upper(), url, headers=headers, timeout=10, **kwargs)
    assert r.status_code == status, f"{method.upper()} {path} {name}: {r.status_code} {r.text[:500]}"
    if error is not None:  # refused for the reason the example names
        assert r.json()["error"] == error, r.text
    api = env.api[doc]
    request = RequestsOpenAPIRequest(r.request)
    api.validate_response(request, RequestsOpenAPIResponse(r))
    if status < 300 and "Content-Type" not in (headers or {}):
        # A request Ferry accepts is one the document describes.
        api.validate_request(request)
    check_meaning(doc, path, name, r)


def check_meaning(doc, path, name, r):
    """What the schema alone cannot say about some answers."""
    if doc != "public":
        return
    if name == "dpopBound":
        assert r.json()["token_type"] == "DPoP"
        claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
        assert claims["cnf"]["jkt"]
    if name == "dpopWithoutNonce":
        assert r.headers["DPoP-Nonce"], "the nonce to use next"
    if name == "referenceToken":
        assert r.json()["access_token"].startswith("ferry_ref_")
    if name == "delegation":
        assert jwt.decode(r.json()["access_token"], options={"verify_signature": False})["act"]["sub"]
    if name == "inactiveToken":
        assert r.json() == {"active": False}
    if name == "activeToken":
        assert r.json()["active"] is True
    if name == "splitToken" and path == "/token":
        assert r.json()["issued_token_type"] == SPLIT
    if name == "phantomToken" or (name == "splitToken" and path == "/introspect"):
        assert r.headers["Content-Type"] == "application/jwt"
        assert jwt.get_unverified_header(r.text)["typ"] == "at+jwt"
