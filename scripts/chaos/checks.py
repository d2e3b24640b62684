"""What the chaos run checks after each fault, against every replica, independently of
Ferry's code: each issued token against each replica's /jwks (kid published, ES256
signature valid), each revocation made before the fault at each replica's /introspect,
and each service-account assertion used before the fault replayed once more.
"""

import bisect
import json
import threading

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


class JwksWatch:
    """Fetches every replica's /jwks every 500 ms during the load, as relying services
    fetch it whenever they like: a token must verify against the JWKS any replica serves
    from the moment it was issued, not only against what the replicas serve at the end
    (a replica that lacked a key for a while and caught up later hides its gap there)."""

    def __init__(self, replicas, clock):
        self.replicas, self.clock = replicas, clock
        self.snapshots = [[] for _ in replicas]  # per replica: (time, {kid: jwk})
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def run(self):
        while not self.stop.is_set():
            for i, r in enumerate(self.replicas):
                sent = self.clock()  # served after this moment
                jwks = fetch_jwks([r])[0]
                if jwks is not None:
                    self.snapshots[i].append((sent, jwks))
            self.stop.wait(0.5)

    def finish(self):
        self.stop.set()
        self.thread.join()

    def first_after(self, i, t):
        """The first JWKS replica i served after time t, or None."""
        snaps = self.snapshots[i]
        k = bisect.bisect_left(snaps, t, key=lambda s: s[0])
        return snaps[k][1] if k < len(snaps) else None


def verify_tokens(items, final_jwks, watch=None):
    """Each (token, time it was issued) against each replica's JWKS: the first one that
    replica served after the token was issued, and the one it serves at the end. Returns
    (tokens failing at one replica or more, per-replica failures then, per-replica failures
    at the end, kids seen)."""
    cache = {}
    n = len(final_jwks)
    bad_any, then, end, kids = 0, [0] * n, [0] * n, set()

    def ok(token, header, signing_input, signature, jwks):
        jwk = (jwks or {}).get(header.get("kid"))
        if jwk is None:
            return False
        key = (token, json.dumps(jwk, sort_keys=True))
        if key not in cache:
            cache[key] = header.get("alg") == "ES256" and p256.verify(jwk, signing_input, signature)
        return cache[key]

    for token, issued_at in items:
        parts = p256.jwt_parts(token)
        if parts is None:
            bad_any += 1
            continue
        header, _claims, signing_input, signature = parts
        kids.add(header.get("kid"))
        failed = False
        for i in range(n):
            if not ok(token, header, signing_input, signature, final_jwks[i]):
                end[i] += 1
                failed = True
            if watch is not None:
                served = watch.first_after(i, issued_at)
                if served is not None and not ok(token, header, signing_input, signature, served):
                    then[i] += 1
                    failed = True
        bad_any += failed
    return bad_any, then, end, kids


def self_check(token, jwks_per_replica):
    """The verifier is not vacuous: a token Ferry issued verifies at some replica, and the
    same token with one bit of its signature flipped verifies nowhere."""
    header, _claims, signing_input, signature = p256.jwt_parts(token)
    keys = [j[header["kid"]] for j in jwks_per_replica if j and header.get("kid") in j]
    if not any(p256.verify(k, signing_input, signature) for k in keys):
        raise RuntimeError("self-check: a token Ferry just issued verifies at no replica's /jwks")
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    if any(p256.verify(k, signing_input, tampered) for k in keys):
        raise RuntimeError("self-check: the verifier accepts a tampered signature")


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
