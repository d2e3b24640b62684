"""Direct API authentication with service-account keys, with PyJWT on both sides: a
service account's self-signed JWT, signed by PyJWT, is accepted by the example relying
service (ferry-verify) beside a Ferry token, and PyJWT's PyJWKClient verifies it against
Ferry's /service-accounts/{id}/jwks by itself. Each refusal beside its twin. Nothing
leaves 127.0.0.1.
"""

import json
import subprocess
import time
import uuid

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from ferry_harness import BIN, listening_socket, start_ferry, stop

API = "https://api.example.com"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def public_jwk(key, kid):
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "alg": "ES256", "use": "sig"}


class Env:
    pass


@pytest.fixture(scope="module")
def env(tmp_path_factory, request):
    e = Env()
    tmp = tmp_path_factory.mktemp("sa")
    e.key = ec.generate_private_key(ec.SECP256R1())
    (tmp / "builder.json").write_text(json.dumps({"keys": [public_jwk(e.key, "b1")]}))
    sock = listening_socket()
    e.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    (tmp / "ferry.yaml").write_text(
        f"""
issuer: {e.url}
data_dir: {tmp / "data"}
admin: {{ listen: "off" }}
limits: {{ shutdown_delay: 0s }}
providers:
  - {{ id: sa, kind: service_account }}
service_accounts:
  - {{ id: builder, jwks: {{ file: {tmp / "builder.json"} }} }}
audiences:
  - audience: {API}
    rules:
      - allow: provider == 'service-account'
"""
    )
    ferry = start_ferry(sock, tmp / "ferry.yaml")
    request.addfinalizer(lambda: stop(ferry))
    svc = subprocess.Popen(
        [BIN / "ferry-example-relying-service"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={"FERRY_ISSUER": e.url, "AUDIENCE": API, "INSECURE_ORIGINS": e.url,
             "SERVICE_ACCOUNTS": "builder"},
    )
    request.addfinalizer(lambda: stop(svc))
    e.svc = svc.stdout.readline().strip().rsplit(" ", 1)[-1]
    assert e.svc.startswith("http://127.0.0.1:"), e.svc
    yield e


def direct(env, **over):
    now = int(time.time())
    claims = {"iss": "builder", "sub": "builder", "aud": API, "iat": now, "exp": now + 300,
              "jti": str(uuid.uuid4()), **over}
    return jwt.encode(claims, env.key, algorithm="ES256", headers={"kid": "b1"})


def whoami(env, token):
    return requests.get(f"{env.svc}/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_pyjwt_verifies_a_direct_jwt_with_the_published_keys(env):
    token = direct(env)
    client = jwt.PyJWKClient(f"{env.url}/service-accounts/builder/jwks")
    key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience=API, issuer="builder")
    assert claims["sub"] == "builder"
    # The twin: a key that is not the account's does not verify it.
    other = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(jwt.decode(token, options={"verify_signature": False}), other,
                        algorithm="ES256", headers={"kid": "b1"})
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, key.key, algorithms=["ES256"], audience=API, issuer="builder")
    # Only public members are published.
    for k in requests.get(f"{env.url}/service-accounts/builder/jwks", timeout=10).json()["keys"]:
        assert "d" not in k and set(k) <= {"kty", "crv", "kid", "alg", "use", "x", "y", "n", "e"}


def test_the_relying_service_takes_a_pyjwt_signed_jwt_and_a_ferry_token_side_by_side(env):
    token = direct(env)
    r = whoami(env, token)
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "service_account" and r.json()["subject"] == "builder"
    assert whoami(env, token).status_code == 401  # its jti is spent
    # An assertion for Ferry is refused by the API, and exchanged by Ferry.
    assertion = direct(env, aud=env.url)
    assert whoami(env, assertion).status_code == 401
    r = requests.post(f"{env.url}/token", data={"grant_type": JWT_BEARER, "assertion": assertion,
                                                 "audience": API}, timeout=10)
    assert r.status_code == 200, r.text
    r = whoami(env, r.json()["access_token"])
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "ferry"
