"""ES256 (ECDSA over P-256 with SHA-256, JWS raw r||s signatures) in the standard library
alone, so the chaos run needs no package from a registry: it signs the misbehaving issuer's
tokens and the service account's assertions, and verifies every token Ferry issued against
each replica's /jwks independently of Ferry's own code. Not constant time: test keys only.
"""

import base64
import hashlib
import hmac
import json
import secrets

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
A = P - 3
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# Points in Jacobian coordinates (X, Y, Z); None is the point at infinity.
def _double(p):
    if p is None:
        return None
    x, y, z = p
    if y == 0:
        return None
    yy = y * y % P
    s = 4 * x * yy % P
    zz = z * z % P
    m = 3 * (x - zz) * (x + zz) % P
    x3 = (m * m - 2 * s) % P
    y3 = (m * (s - x3) - 8 * yy * yy) % P
    z3 = 2 * y * z % P
    return (x3, y3, z3)


def _add(p, q):
    if p is None:
        return q
    if q is None:
        return p
    x1, y1, z1 = p
    x2, y2, z2 = q
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    u2 = x2 * z1z1 % P
    s1 = y1 * z2 * z2z2 % P
    s2 = y2 * z1 * z1z1 % P
    if u1 == u2:
        return _double(p) if s1 == s2 else None
    h = (u2 - u1) % P
    r = (s2 - s1) % P
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - s1 * hhh) % P
    z3 = h * z1 * z2 % P
    return (x3, y3, z3)


def _affine(p):
    if p is None:
        return None
    x, y, z = p
    zi = pow(z, -1, P)
    zi2 = zi * zi % P
    return (x * zi2 % P, y * zi2 * zi % P)


def _table(point):
    """Multiples 0..15 of `point` for every 4-bit window: k*P = sum of table lookups."""
    rows = []
    base = point
    for _ in range(64):
        row = [None]
        acc = None
        for _ in range(15):
            acc = _add(acc, base)
            row.append(acc)
        rows.append(row)
        for _ in range(4):
            base = _double(base)
    return rows


def _mul_table(rows, k):
    acc = None
    for i in range(64):
        nibble = (k >> (4 * i)) & 15
        if nibble:
            acc = _add(acc, rows[i][nibble])
    return acc


def _mul(point, k):
    acc = None
    for bit in bin(k)[2:]:
        acc = _double(acc)
        if bit == "1":
            acc = _add(acc, point)
    return acc


_G_TABLE = _table((GX, GY, 1))


def on_curve(x: int, y: int) -> bool:
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


class Key:
    """A P-256 key pair (ES256 signing), its public JWK and its RFC 7638 thumbprint kid."""

    def __init__(self, d: int | None = None):
        self.d = d if d is not None else secrets.randbelow(N - 1) + 1
        self.x, self.y = _affine(_mul_table(_G_TABLE, self.d))

    def public_jwk(self) -> dict:
        jwk = {
            "crv": "P-256",
            "kty": "EC",
            "x": b64u(self.x.to_bytes(32, "big")),
            "y": b64u(self.y.to_bytes(32, "big")),
        }
        thumb = json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode()
        return {**jwk, "kid": b64u(hashlib.sha256(thumb).digest()), "alg": "ES256", "use": "sig"}

    def sign(self, message: bytes) -> bytes:
        e = int.from_bytes(hashlib.sha256(message).digest(), "big")
        while True:
            # RFC 6979-like nonce (HMAC of the key and digest, plus fresh randomness).
            k = int.from_bytes(
                hmac.new(self.d.to_bytes(32, "big"), message + secrets.token_bytes(16), hashlib.sha256).digest(),
                "big",
            ) % N
            if k == 0:
                continue
            r = _affine(_mul_table(_G_TABLE, k))[0] % N
            if r == 0:
                continue
            s = pow(k, -1, N) * (e + r * self.d) % N
            if s == 0:
                continue
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def jwt(self, claims: dict, kid: str | None = None, typ: str = "JWT") -> str:
        header = {"alg": "ES256", "typ": typ, "kid": kid or self.public_jwk()["kid"]}
        signing_input = (
            b64u(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64u(json.dumps(claims, separators=(",", ":")).encode())
        )
        return signing_input + "." + b64u(self.sign(signing_input.encode()))


def verify(jwk: dict, message: bytes, signature: bytes) -> bool:
    """ES256 verification of a raw r||s signature with a public JWK (FIPS 186-4 §6.4)."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or len(signature) != 64:
        return False
    try:
        x = int.from_bytes(b64u_decode(jwk["x"]), "big")
        y = int.from_bytes(b64u_decode(jwk["y"]), "big")
    except (KeyError, ValueError, TypeError):
        return False
    if not on_curve(x, y):
        return False
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (0 < r < N and 0 < s < N):
        return False
    e = int.from_bytes(hashlib.sha256(message).digest(), "big")
    w = pow(s, -1, N)
    point = _add(_mul_table(_G_TABLE, e * w % N), _mul((x, y, 1), r * w % N))
    if point is None:
        return False
    return _affine(point)[0] % N == r


def jwt_parts(token: str):
    """(header, claims, signing input, signature) of a compact JWS, or None."""
    try:
        h, c, s = token.split(".")
        return (
            json.loads(b64u_decode(h)),
            json.loads(b64u_decode(c)),
            (h + "." + c).encode(),
            b64u_decode(s),
        )
    except (ValueError, json.JSONDecodeError):
        return None
