"""What the chaos run checks after each fault, against every replica, independently of
Ferry's code: each issued token against each replica's /jwks (kid published, ES256
signature valid), each revocation made before the fault at each replica's /introspect,
and each service-account assertion used before the fault replayed once more.
"""

import json

import p256
from infra import json_get
from load import bearer_form, post

GATEWAY = ("gateway", "gw-secret")


def fetch_jwks(replicas) -> list:
    out = []
    for r in replicas:
        try:
            status, body = json_get(r.addr, "/jwks")
        except (OSError, ValueError):
            status, body = None, None
        out.append({k["kid"]: k for k in body.get("keys", []) if "kid" in k} if status == 200 and body else None)
    return out


def verify_tokens(tokens, jwks_per_replica):
    """(tokens unverifiable at one replica or more, per-replica failure counts, kids seen)."""
    cache = {}
    bad_any = 0
    per_replica = [0] * len(jwks_per_replica)
    kids = set()
    for token in tokens:
        parts = p256.jwt_parts(token)
        if parts is None:
            bad_any += 1
            continue
        header, _claims, signing_input, signature = parts
        kid = header.get("kid")
        kids.add(kid)
        failed = False
        for i, jwks in enumerate(jwks_per_replica):
            jwk = (jwks or {}).get(kid)
            if jwk is None:
                ok = False
            else:
                key = (token, json.dumps(jwk, sort_keys=True))
                if key not in cache:
                    cache[key] = header.get("alg") == "ES256" and p256.verify(jwk, signing_input, signature)
                ok = cache[key]
            if not ok:
                per_replica[i] += 1
                failed = True
        bad_any += failed
    return bad_any, per_replica, kids


def introspect(replica, token):
    """True (active), False (inactive) or None (the replica did not answer 200)."""
    a = post(replica.addr, "/introspect", {"token": token}, basic=GATEWAY, timeout=5)
    if not a.ok:
        return None
    try:
        return json.loads(a.body).get("active") is True
    except ValueError:
        return None


def revocation_figures(replicas, revoked, live):
    """Revoked items active at one replica or more; live items inactive at one or more;
    introspection calls that did not answer."""
    lost, gone, errors = [], [], 0
    for label, token in revoked:
        answers = [introspect(r, token) for r in replicas]
        errors += answers.count(None)
        if any(a is True for a in answers):
            lost.append(label)
    for label, token in live:
        answers = [introspect(r, token) for r in replicas]
        errors += answers.count(None)
        if any(a is False for a in answers):
            gone.append(label)
    return lost, gone, errors


def replay_figures(replicas, assertions):
    """How many assertions already used before the fault were accepted again."""
    accepted = 0
    statuses = {}
    for k, a in enumerate(assertions):
        ans = post(replicas[k % len(replicas)].addr, "/token", bearer_form(a), timeout=10)
        statuses[ans.status] = statuses.get(ans.status, 0) + 1
        accepted += ans.ok
    return accepted, statuses
