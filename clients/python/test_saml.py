"""SAML 2.0 assertions signed by tools Ferry did not write, exchanged at a real Ferry.

The assertions reproduce the documented layouts of Entra ID, AD FS, Okta, Keycloak and
Shibboleth (saml_fixtures.py cites the sources) and are signed by Python's signxml or the
xmlsec1 command line, with exclusive or inclusive canonicalization, RSA or ECDSA keys.
Every fixture is first checked with `xmlsec1 --verify`, so a refusal by Ferry of a good
fixture is Ferry's, and every negative twin differs from an accepted fixture only in the
part it attacks. Google's google-auth exchanges one, unmodified, from a file source.

Not covered, because Ferry's interface refuses it: encrypted assertions
(<saml:EncryptedAssertion>). Shibboleth IdP encrypts them by default (SAML2.SSO
encryptAssertions=true, and it signs the Response, signResponses=true, rather than the
Assertion), and Entra ID and Okta encrypt them when the SP's certificate is configured;
such an IdP must be set to send this SP plain assertions. SHA-1 (older AD FS relying-party
trusts) is refused unless the provider says allow_sha1.
"""

import base64
import dataclasses
import datetime
import http.server
import threading
import urllib.parse

import jwt
import pytest
import requests
from lxml import etree

import saml_fixtures as sf
from ferry_harness import BIN, listening_socket, start_ferry

AUDIENCE = "https://relying.example.com"  # the Ferry audience the token is for
SP = "https://ferry.test/saml-sp"  # Ferry's SAML SP entity id, in AudienceRestriction
OKTA_ACS = "https://ferry.test/saml/acs"  # a Recipient configured explicitly (okta)
TE = "urn:ietf:params:oauth:grant-type:token-exchange"
# README "Errors": an invalid subject token is 400 invalid_request (RFC 8693 §2.2.2).
REFUSED = "invalid_request"
TENANT = "8a1e6b2c-5f0d-4c3e-9b7a-2d4f6e8a0c1b"

ENTRA_GROUPS = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"
ENTRA_TENANT = "http://schemas.microsoft.com/identity/claims/tenantid"
ENTRA_NAME = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
ADFS_GROUP = "http://schemas.xmlsoap.org/claims/Group"
ADFS_UPN = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
EPPN = "urn:oid:1.3.6.1.4.1.5923.1.1.1.6"
ENTITLEMENT = "urn:oid:1.3.6.1.4.1.5923.1.1.1.7"
AFFILIATION = "urn:oid:1.3.6.1.4.1.5923.1.1.1.9"


@dataclasses.dataclass
class Provider:
    """A SAML provider configured in Ferry, the IdP behind it, and what its assertions
    say and what Ferry's token must then say."""

    id: str
    layout: str
    entity_id: str
    attributes: dict
    subject: str  # NameID
    recipient: str = None  # default: Ferry's /token
    expect_sub: str = None  # default: the NameID
    expect_groups: list = None
    expect_attributes: dict = None


PROVIDERS = {
    "entra": Provider(
        "entra", "entra", f"https://sts.windows.net/{TENANT}/",
        {ENTRA_TENANT: [TENANT], ENTRA_NAME: ["alice@corp.example.test"],
         ENTRA_GROUPS: ["6e2a1f4c-0b7d-4a8e-9c3f-1d5b7e9a2c4f", "b3c5d7e9-1a2b-4c6d-8e0f-a1b2c3d4e5f6"]},
        "m_H3naDei2LNxUmEcWd0BZlNi_jVET1pMLR6iQSuYmo",
        expect_groups=["6e2a1f4c-0b7d-4a8e-9c3f-1d5b7e9a2c4f", "b3c5d7e9-1a2b-4c6d-8e0f-a1b2c3d4e5f6"],
        expect_attributes={"tenant": TENANT, "upn": "alice@corp.example.test",
                           "idp": f"https://sts.windows.net/{TENANT}/"},
    ),
    "adfs": Provider(
        "adfs", "adfs", "http://adfs.corp.example.test/adfs/services/trust",
        {ADFS_UPN: ["bob@corp.example.test"], ADFS_GROUP: ["Domain Users", "Release Managers"]},
        "CORP\\bob",
        expect_groups=["Domain Users", "Release Managers"],
        expect_attributes={"upn": "bob@corp.example.test"},
    ),
    "okta": Provider(
        "okta", "okta", "http://www.okta.com/exk1fcia6d6EMsf331d8",
        {"department": ["Platform & Tools"], "groups": ["Everyone", "deployers"]},
        "carol@corp.example.test", recipient=OKTA_ACS,
        expect_groups=["Everyone", "deployers"], expect_attributes={"department": "Platform & Tools"},
    ),
    "keycloak": Provider(
        "keycloak", "keycloak", "https://keycloak.example.test/realms/corp",
        {"member": ["/engineering/platform"], "Role": ["offline_access", "deployer"]},
        "dave",
        expect_groups=["offline_access", "deployer"], expect_attributes={"group": "/engineering/platform"},
    ),
    "shib": Provider(
        "shib", "shibboleth", "https://idp.example.org/idp/shibboleth",
        {EPPN: ["erin@example.org"], AFFILIATION: ["member@example.org", "staff@example.org"],
         ENTITLEMENT: ["urn:mace:example.org:deploy", "urn:mace:dir:entitlement:common-lib-terms"]},
        "(transient)",
        expect_sub="erin@example.org",
        expect_groups=["urn:mace:example.org:deploy", "urn:mace:dir:entitlement:common-lib-terms"],
        expect_attributes={"affiliation": "member@example.org"},
    ),
}

# (provider, signing tool, canonicalization): every layout with both tools; inclusive
# c14n where a layout's IdP could (AD FS and Shibboleth write exclusive by default, so
# these are the "at least one inclusive" cases; Okta's PrefixList only means something
# under exclusive c14n, Keycloak's Response is signed exclusive).
CASES = [
    ("entra", "signxml", sf.EXC_C14N),
    ("entra", "xmlsec1", sf.EXC_C14N),
    ("adfs", "xmlsec1", sf.EXC_C14N),
    ("adfs", "signxml", sf.INC_C14N),
    ("okta", "xmlsec1", sf.EXC_C14N),
    ("okta", "signxml", sf.EXC_C14N),
    ("keycloak", "xmlsec1", sf.EXC_C14N),
    ("keycloak", "signxml", sf.EXC_C14N),
    ("shib", "signxml", sf.EXC_C14N),
    ("shib", "xmlsec1", sf.INC_C14N),
]


def case_id(case):
    provider, tool, c14n = case
    return f"{provider}-{tool}-{'exc' if c14n == sf.EXC_C14N else 'inc'}"


class Env:
    pass


def yaml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture(scope="session")
def saml(tmp_path_factory):
    assert (BIN / "ferry").exists(), f"{BIN / 'ferry'} missing: build with `cargo build --bins` first"
    e = Env()
    tmp = tmp_path_factory.mktemp("saml")
    keys = tmp / "keys"
    e.idp = {
        "entra": sf.make_idp(keys, "entra"),
        "entra-previous": sf.make_idp(keys, "entra-previous"),  # rollover: both in metadata
        "adfs": sf.make_idp(keys, "adfs"),
        "okta": sf.make_idp(keys, "okta"),
        "keycloak": sf.make_idp(keys, "keycloak", "ec"),
        "keycloak-p384": sf.make_idp(keys, "keycloak-p384", "ec384"),  # the realm's ES384 key
        "shib": sf.make_idp(keys, "shib"),
        "shib-encryption": sf.make_idp(keys, "shib-encryption"),  # use="encryption" only
        "stranger": sf.make_idp(keys, "stranger"),  # in no metadata
        "stranger-ec": sf.make_idp(keys, "stranger-ec", "ec"),
    }
    md = {
        "entra": sf.write_metadata(tmp / "entra-federationmetadata.xml", "entra", PROVIDERS["entra"].entity_id,
                                   [e.idp["entra-previous"], e.idp["entra"]]),
        "okta": sf.write_metadata(tmp / "okta-metadata.xml", "md", PROVIDERS["okta"].entity_id, [e.idp["okta"]]),
        "keycloak": sf.write_metadata(tmp / "keycloak-descriptor.xml", "keycloak", PROVIDERS["keycloak"].entity_id,
                                      [e.idp["keycloak"], e.idp["keycloak-p384"]]),
        "shib": sf.write_metadata(tmp / "idp-metadata.xml", "shibboleth", PROVIDERS["shib"].entity_id,
                                  [e.idp["shib"]], encryption=[e.idp["shib-encryption"]]),
    }
    # Keycloak's descriptor is fetched from the realm's URL, as an operator would point at it.
    descriptor = md["keycloak"].read_bytes()

    class Realm(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            found = self.path == "/realms/corp/protocol/saml/descriptor"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "text/xml;charset=utf-8")
            self.end_headers()
            self.wfile.write(descriptor if found else b"")

        def log_message(self, *args):
            pass

    realm = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Realm)
    threading.Thread(target=realm.serve_forever, daemon=True).start()
    realm_origin = f"http://127.0.0.1:{realm.server_address[1]}"
    sock = listening_socket()
    e.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    e.token_url = f"{e.url}/token"
    e.jwks = jwt.PyJWKClient(f"{e.url}/jwks")
    adfs_pem = "\n".join("        " + line for line in e.idp["adfs"].cert_pem.strip().splitlines())
    p = PROVIDERS
    (tmp / "ferry.yaml").write_text(f"""
issuer: {e.url}
data_dir: {tmp / "data"}
admin: {{ listen: "off" }}
limits:
  shutdown_delay: 0s
outbound:
  allow_insecure_origins: ["{realm_origin}"]
providers:
  - id: entra
    kind: saml
    entity_id: {p["entra"].entity_id}
    metadata: {{ file: {md["entra"]} }}
    audiences: [{SP}]
    mapping:
      subject: assertion.subject
      groups: assertion.attributes['{ENTRA_GROUPS}']
      attributes:
        tenant: assertion.attributes['{ENTRA_TENANT}'][0]
        upn: assertion.attributes['{ENTRA_NAME}'][0]
        idp: assertion.issuer
  - id: adfs
    kind: saml
    entity_id: {p["adfs"].entity_id}
    certificates:
      - |
{adfs_pem}
    audiences: [{SP}]
    mapping:
      subject: assertion.subject
      groups: assertion.attributes['{ADFS_GROUP}']
      attributes:
        upn: assertion.attributes['{ADFS_UPN}'][0]
  - id: okta
    kind: saml
    entity_id: {p["okta"].entity_id}
    metadata: {{ file: {md["okta"]} }}
    audiences: [{SP}]
    recipients: [{OKTA_ACS}]
    mapping:
      subject: assertion.subject
      groups: assertion.attributes['groups']
      attributes:
        department: assertion.attributes['department'][0]
  - id: keycloak
    kind: saml
    entity_id: {p["keycloak"].entity_id}
    metadata: {{ url: "{realm_origin}/realms/corp/protocol/saml/descriptor" }}
    audiences: [{SP}]
    mapping:
      subject: assertion.subject
      groups: assertion.attributes['Role']
      attributes:
        group: assertion.attributes['member'][0]
  - id: shib
    kind: saml
    entity_id: {p["shib"].entity_id}
    metadata: {{ file: {md["shib"]} }}
    audiences: [{SP}]
    single_use: true               # every shib fixture below is exchanged once
    mapping:
      subject: assertion.attributes['{EPPN}'][0]
      groups: assertion.attributes['{ENTITLEMENT}']
      attributes:
        affiliation: assertion.attributes['{AFFILIATION}'][0]
audiences:
  - audience: {AUDIENCE}
    ignore_unknown_scopes: true    # a client given Google's cloud-platform scope sends it
    rules:
      - allow: provider == 'entra' || provider == 'adfs' || provider == 'okta' || provider == 'keycloak' || provider == 'shib'
        scopes: [read]
""")
    e.tmp = tmp
    ferry = start_ferry(sock, tmp / "ferry.yaml", log=tmp / "ferry.log")
    yield e
    ferry.terminate()
    ferry.wait(timeout=10)
    realm.shutdown()


def claims_for(e, provider, **changes):
    p = PROVIDERS[provider]
    c = sf.Claims(p.entity_id, p.subject, SP, p.recipient or e.token_url,
                  {k: list(v) for k, v in p.attributes.items()})
    return dataclasses.replace(c, **changes)


def signed(e, provider, tool="xmlsec1", c14n=sf.EXC_C14N, bare=False, key=None, claims=None, between=None,
           algorithms=(), edit=None, **options):
    """A fresh signed document of PROVIDER's layout (new IDs each time) and its claims,
    checked with xmlsec1 --verify against the key that signed it. EDIT, if given, changes
    the unsigned document's bytes before signing."""
    p = PROVIDERS[provider]
    c = claims or claims_for(e, provider)
    idp = e.idp[key or provider]
    unsigned = sf.build(p.layout, c, bare=bare, **options)
    if edit is not None:
        before, unsigned = unsigned, edit(unsigned)
        assert unsigned != before, "the edit changed nothing"
    doc = sf.sign(unsigned, p.layout, idp, tool, c14n, between, *algorithms)
    if sf.signed_ids(doc) and between is None:
        assert sf.xmlsec_verify(doc, idp), "fixture does not verify with xmlsec1"
    return doc, c


def exchange(e, document, encoding="std"):
    """POSTs DOCUMENT, base64 in ENCODING (std, std-nopad, url, url-nopad), to /token."""
    token = sf.b64(document, urlsafe=encoding.startswith("url"), padded=not encoding.endswith("nopad"))
    return requests.post(e.token_url, data={
        "grant_type": TE,
        "subject_token_type": sf.SAML2_TOKEN_TYPE,
        "subject_token": token,
        "audience": AUDIENCE,
    }, timeout=10)


def accepted(e, response, provider, subject=None):
    """The response is a token for PROVIDER's subject, verified like a relying service
    would (PyJWT, keys from Ferry's /jwks); returns its claims."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    token = body["access_token"]
    key = e.jwks.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience=AUDIENCE, issuer=e.url)
    p = PROVIDERS[provider]
    assert claims["sub"] == (subject or p.expect_sub or p.subject)
    # Provenance (README "Issued tokens"): the provider, the original issuer and subject.
    assert claims["ferry"]["provider"] == provider
    assert claims["ferry"]["iss"] == p.entity_id
    if layout_of(provider) == "shibboleth":  # a transient NameID, new each time
        assert claims["ferry"].get("sub", "").startswith("AAdzZWNyZXQx")
    else:
        assert claims["ferry"].get("sub") == (subject or p.subject)
    assert claims["groups"] == p.expect_groups
    assert claims["attributes"] == p.expect_attributes
    assert claims["scope"] == "read"
    return claims


def layout_of(provider):
    return PROVIDERS[provider].layout


def refused(response):
    assert response.status_code == 400, response.text
    assert response.json()["error"] == REFUSED, response.text


# ---------------------------------------------------------------------------------------
# The documented layouts, as a Response and as an Assertion, in every base64 alphabet


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_documented_layout_is_exchanged_as_response_and_as_assertion(saml, case):
    provider, tool, c14n = case
    layout = sf.LAYOUTS[PROVIDERS[provider].layout]

    # The whole samlp:Response, as the IdP posts it to the SP, in two alphabets.
    for encoding in ("std", "url-nopad"):
        doc, _ = signed(saml, provider, tool, c14n)
        accepted(saml, exchange(saml, doc, encoding), provider)

    if "assertion" not in layout.signs:
        return  # Keycloak signs the Response only: see the bare-assertion test below
    # The Assertion alone, as an IdP that signs it sends it standalone.
    doc, _ = signed(saml, provider, tool, c14n, bare=True)
    accepted(saml, exchange(saml, doc, "std-nopad"), provider)
    if c14n == sf.EXC_C14N:
        # The Assertion taken out of the signed Response (an SP forwarding what it got):
        # its signature holds because exclusive c14n ignores the Response's namespaces.
        doc, _ = signed(saml, provider, tool, c14n)
        extracted = sf.extract_assertion(doc)
        assert sf.xmlsec_verify(extracted, saml.idp[provider])
        accepted(saml, exchange(saml, extracted, "url"), provider)


@pytest.mark.parametrize("tool", ["xmlsec1", "signxml"])
def test_keycloak_assertion_taken_out_of_its_signed_response_is_unsigned_and_refused(saml, tool):
    """Keycloak signs the Response, not the Assertion: the Assertion alone carries no
    signature. Twin: the same Response, whole, is accepted."""
    doc, _ = signed(saml, "keycloak", tool)
    bare = sf.extract_assertion(doc)
    assert sf.signed_ids(bare) == []
    refused(exchange(saml, bare))
    accepted(saml, exchange(saml, doc), "keycloak")


def test_keycloak_roles_in_separate_attribute_elements_are_one_list(saml):
    """Keycloak's role list mapper with "Single Role Attribute" off writes one <Attribute
    Name="Role"> per role; assertion.attributes['Role'] holds them all, in order. Twin: one
    Attribute with two values gives the same list."""
    for split in (True, False):
        doc, _ = signed(saml, "keycloak", split_roles=split)
        assert doc.count(b' Name="Role"') == (2 if split else 1)
        accepted(saml, exchange(saml, doc), "keycloak")


@pytest.mark.parametrize("tool", ["xmlsec1", "signxml"])
@pytest.mark.parametrize("provider,key,algorithms", [
    ("entra", None, (sf.RSA_SHA384, sf.SHA384)),
    ("okta", None, (sf.RSA_SHA512, sf.SHA512)),
    # Keycloak's ECDSA_SHA384 client setting signs with the realm's ES384 key, on P-384
    # (Keycloak binds an EC key's algorithm to its curve); its descriptor lists both keys.
    ("keycloak", "keycloak-p384", (sf.ECDSA_SHA384, sf.SHA384)),
], ids=["rsa-sha384", "rsa-sha512", "ecdsa-sha384"])
def test_the_other_documented_algorithms_are_accepted(saml, tool, provider, key, algorithms):
    doc, _ = signed(saml, provider, tool, key=key, algorithms=algorithms)
    assert algorithms[0].encode() in doc and algorithms[1].encode() in doc
    accepted(saml, exchange(saml, doc), provider)


def test_base64_wrapped_as_the_base64_command_writes_it_is_accepted(saml):
    """`base64 response.xml > token` wraps at 76 columns and ends with a newline; MIME and
    PEM tools wrap at 64 or 76 with CRLF."""
    for sep, width in (("\n", 76), ("\r\n", 64)):
        doc, _ = signed(saml, "entra")
        b = sf.b64(doc)
        wrapped = sep.join(b[i:i + width] for i in range(0, len(b), width)) + sep
        r = requests.post(saml.token_url, data={
            "grant_type": TE, "subject_token_type": sf.SAML2_TOKEN_TYPE, "subject_token": wrapped,
            "audience": AUDIENCE,
        }, timeout=10)
        accepted(saml, r, "entra")


def without_key_info(doc):
    root = etree.fromstring(doc)
    for key_info in list(root.iter(f"{{{sf.DS}}}KeyInfo")):
        key_info.getparent().remove(key_info)
    return etree.tostring(root)


@pytest.mark.parametrize("provider", ["entra", "keycloak"])
def test_key_info_is_optional_and_names_only_configured_certificates(saml, provider):
    """KeyInfo is optional in XML Signature (PingFederate, for one, can leave the
    certificate out): without it, the configured certificates are tried. A certificate it
    names must be one of them, even when the signature was made with a configured key.
    The two differ only in KeyInfo."""
    doc, _ = signed(saml, provider)
    bare_signature = without_key_info(doc)
    accepted(saml, exchange(saml, bare_signature), provider)
    doc, _ = signed(saml, provider)
    root = etree.fromstring(doc)
    for cert in root.iter(f"{{{sf.DS}}}X509Certificate"):
        cert.text = saml.idp["stranger"].cert_b64
    foreign = etree.tostring(root)
    assert sf.xmlsec_verify(foreign, saml.idp[provider])
    refused(exchange(saml, foreign))


# ---------------------------------------------------------------------------------------
# Negative twins: each differs from an accepted fixture only in the part it attacks


@pytest.mark.parametrize("tool", ["signxml", "xmlsec1"])
@pytest.mark.parametrize("bare", [False, True], ids=["response", "assertion"])
def test_attribute_value_altered_after_signing_is_refused(saml, tool, bare):
    doc, _ = signed(saml, "entra", tool, bare=bare)
    group = PROVIDERS["entra"].attributes[ENTRA_GROUPS][0].encode()
    altered = doc.replace(group, b"00000000-0000-0000-0000-000000000000")
    assert altered != doc and not sf.xmlsec_verify(altered, saml.idp["entra"])
    refused(exchange(saml, altered))
    accepted(saml, exchange(saml, doc), "entra")


@pytest.mark.parametrize("provider,key", [
    ("entra", "stranger"),  # a key in no metadata
    ("shib", "shib-encryption"),  # a key the metadata lists for encryption only
    ("keycloak", "stranger-ec"),
], ids=["entra-unknown-key", "shib-encryption-key", "keycloak-unknown-key"])
def test_signed_with_a_key_not_listed_for_signing_is_refused(saml, provider, key):
    c = claims_for(saml, provider)
    doc, _ = signed(saml, provider, key=key, claims=c)
    assert sf.xmlsec_verify(doc, saml.idp[key]) and not sf.xmlsec_verify(doc, saml.idp[provider])
    refused(exchange(saml, doc))
    twin, _ = signed(saml, provider, claims=dataclasses.replace(c, assertion_id=None, response_id=None))
    accepted(saml, exchange(saml, twin), provider)


def test_either_signing_certificate_of_the_metadata_verifies(saml):
    """Entra's federation metadata lists the current and the next certificate during a
    rollover: an assertion signed with either is accepted."""
    for key in ("entra-previous", "entra"):
        doc, _ = signed(saml, "entra", key=key)
        accepted(saml, exchange(saml, doc), "entra")


@pytest.mark.parametrize("tool", ["xmlsec1", "signxml"])
def test_okta_broken_assertion_signature_under_a_valid_response_signature_is_refused(saml, tool):
    """Okta signs the Assertion, then the Response around it. Here the Assertion's
    SignatureValue is broken before the Response is signed, so the Response's signature
    holds: every signature present must verify. Twin: the same without the break."""

    def break_inner(root):
        value = root.find(f".//{{{sf.SAML}}}Assertion/{{{sf.DS}}}Signature/{{{sf.DS}}}SignatureValue")
        raw = bytearray(base64.b64decode(value.text))
        raw[10] ^= 0x01
        value.text = base64.b64encode(bytes(raw)).decode()

    doc, c = signed(saml, "okta", tool, between=break_inner)
    okta = saml.idp["okta"]
    assert sf.xmlsec_verify(doc, okta, c.response_id) and not sf.xmlsec_verify(doc, okta, c.assertion_id)
    refused(exchange(saml, doc))
    twin, _ = signed(saml, "okta", tool)
    accepted(saml, exchange(saml, twin), "okta")


def test_recipient_outside_the_configured_recipients_is_refused(saml):
    """The okta provider names its Recipient (the SP's ACS URL); an assertion meant for
    Ferry's own /token, valid for other providers, is not for it."""
    c = claims_for(saml, "okta", recipient=saml.token_url)
    doc, _ = signed(saml, "okta", claims=c)
    refused(exchange(saml, doc))
    twin, _ = signed(saml, "okta")
    accepted(saml, exchange(saml, twin), "okta")


def test_audience_outside_the_configured_audiences_is_refused(saml):
    doc, _ = signed(saml, "shib", claims=claims_for(saml, "shib", audience="https://other-sp.example.test/shibboleth"))
    refused(exchange(saml, doc))
    twin, _ = signed(saml, "shib")
    accepted(saml, exchange(saml, twin), "shib")


def test_replayed_assertion_is_refused_with_single_use(saml):
    """The shib provider is single_use: an assertion is exchanged once, whether it comes
    back as the same Response or taken out of it. Twin: a fresh assertion is accepted."""
    doc, _ = signed(saml, "shib")
    accepted(saml, exchange(saml, doc), "shib")
    refused(exchange(saml, doc))
    refused(exchange(saml, sf.extract_assertion(doc), "url-nopad"))
    fresh, _ = signed(saml, "shib")
    accepted(saml, exchange(saml, fresh), "shib")


def test_every_audience_restriction_must_name_the_sp(saml):
    """SAML core §2.5.1.4: an assertion with several AudienceRestrictions is addressed to
    the audiences they all name. Twin: the second restriction names the SP as well."""
    other = b"<AudienceRestriction><Audience>https://other-sp.example.test</Audience></AudienceRestriction>"
    both = (b"<AudienceRestriction><Audience>https://other-sp.example.test</Audience><Audience>"
            + SP.encode() + b"</Audience></AudienceRestriction>")
    doc, _ = signed(saml, "entra", edit=lambda d: d.replace(b"</AudienceRestriction>", b"</AudienceRestriction>" + other))
    refused(exchange(saml, doc))
    twin, _ = signed(saml, "entra", edit=lambda d: d.replace(b"</AudienceRestriction>", b"</AudienceRestriction>" + both))
    accepted(saml, exchange(saml, twin), "entra")


def test_expired_assertion_is_refused(saml):
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    doc, _ = signed(saml, "entra", claims=claims_for(saml, "entra", now=past))
    refused(exchange(saml, doc))
    twin, _ = signed(saml, "entra")
    accepted(saml, exchange(saml, twin), "entra")


def test_issuer_other_than_the_entity_id_is_refused(saml):
    """Signed with the right key (the inline PEM of the adfs provider) but issued under
    another name."""
    c = claims_for(saml, "adfs", issuer="http://adfs.other.example.test/adfs/services/trust")
    doc, _ = signed(saml, "adfs", claims=c)
    refused(exchange(saml, doc))
    twin, _ = signed(saml, "adfs")
    accepted(saml, exchange(saml, twin), "adfs")


@pytest.mark.parametrize("algorithms", [
    (sf.RSA_SHA1, sf.SHA1), (sf.RSA_SHA1, sf.SHA256), (sf.SIGNATURE_METHODS["rsa"], sf.SHA1),
], ids=["rsa-sha1+sha1", "rsa-sha1", "sha1-digest"])
def test_sha1_is_refused_without_allow_sha1(saml, algorithms):
    """AD FS relying-party trusts can still be set to SHA-1; Ferry refuses it unless the
    provider says allow_sha1. Twin: the same signed with SHA-256 throughout."""
    doc, _ = signed(saml, "adfs", algorithms=algorithms)
    assert algorithms[0].encode() in doc and algorithms[1].encode() in doc
    refused(exchange(saml, doc))
    twin, _ = signed(saml, "adfs")
    accepted(saml, exchange(saml, twin), "adfs")


@pytest.mark.parametrize("prolog", [
    b'<!DOCTYPE samlp:Response>',
    b'<!DOCTYPE samlp:Response [<!ENTITY idp "https://idp.example.test">]>',
    b'<?xml-stylesheet type="text/xsl" href="https://idp.example.test/show.xsl"?>',
], ids=["doctype", "internal-subset", "processing-instruction"])
def test_a_dtd_or_processing_instruction_is_refused(saml, prolog):
    """Before the root element, outside what the signature covers (it still verifies).
    Twin: the same document without it."""
    doc, c = signed(saml, "entra")
    assert not doc.startswith(b"<?xml ")
    with_prolog = prolog + b"\n" + doc
    assert sf.xmlsec_verify(with_prolog, saml.idp["entra"], c.assertion_id)
    refused(exchange(saml, with_prolog))
    accepted(saml, exchange(saml, doc), "entra")


def wrap_in_advice(root):
    """XML signature wrapping: a forged Assertion (other subject, no signature) takes the
    signed one's place and carries it inside its <Advice>, where the signature still
    verifies."""
    original = root.find(f"{{{sf.SAML}}}Assertion")
    forged = etree.fromstring(etree.tostring(original))
    forged.remove(forged.find(f"{{{sf.DS}}}Signature"))
    forged.set("ID", "_forged")
    forged.find(f".//{{{sf.SAML}}}NameID").text = "admin@corp.example.test"
    advice = etree.Element(f"{{{sf.SAML}}}Advice")
    forged.find(f"{{{sf.SAML}}}Conditions").addnext(advice)
    root.replace(original, forged)
    advice.append(original)


def forged_sibling_first(root):
    """XML signature wrapping: a forged Assertion (other subject, no signature) before the
    signed one in the same Response."""
    original = root.find(f"{{{sf.SAML}}}Assertion")
    forged = etree.fromstring(etree.tostring(original))
    forged.remove(forged.find(f"{{{sf.DS}}}Signature"))
    forged.set("ID", "_forged")
    forged.find(f".//{{{sf.SAML}}}NameID").text = "admin@corp.example.test"
    original.addprevious(forged)


@pytest.mark.parametrize("wrap", [wrap_in_advice, forged_sibling_first], ids=["advice", "sibling"])
def test_signature_wrapping_is_refused(saml, wrap):
    doc, c = signed(saml, "entra")
    root = etree.fromstring(doc)
    wrap(root)
    wrapped = etree.tostring(root)
    assert sf.xmlsec_verify(wrapped, saml.idp["entra"], c.assertion_id), "the original signature still verifies"
    refused(exchange(saml, wrapped))
    accepted(saml, exchange(saml, doc), "entra")


def test_comment_in_the_name_id_does_not_cut_the_subject(saml):
    """Canonicalization without comments ignores a comment inside the NameID, so the
    signature holds; a parser that reads the first text node only would see
    "alice@corp.example.test" (CVE-2017-11427 and kin). Ferry must refuse it or read the
    whole text. Twin: the same NameID without the comment."""
    full = "alice@corp.example.test.evil.example"
    doc, _ = signed(saml, "entra", claims=claims_for(saml, "entra", subject=full))
    commented = doc.replace(full.encode(), b"alice@corp.example.test<!---->.evil.example")
    assert commented != doc and sf.xmlsec_verify(commented, saml.idp["entra"])
    r = exchange(saml, commented)
    if r.status_code == 200:
        accepted(saml, r, "entra", subject=full)
    else:
        refused(r)
    twin, _ = signed(saml, "entra", claims=claims_for(saml, "entra", subject=full))
    accepted(saml, exchange(saml, twin), "entra", subject=full)


# ---------------------------------------------------------------------------------------
# Google's client library, unmodified


class Recording:
    """google-auth's requests transport, recording what it sends."""

    def __init__(self):
        from google.auth.transport.requests import Request

        self.inner = Request()
        self.sent = []

    def __call__(self, url, method="GET", body=None, headers=None, **kwargs):
        self.sent.append((url, method, body, headers))
        return self.inner(url, method=method, body=body, headers=headers, **kwargs)


def identity_pool_credentials(e, path):
    from google.auth import identity_pool

    return identity_pool.Credentials.from_info({
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": sf.SAML2_TOKEN_TYPE,
        "token_url": e.token_url,
        "credential_source": {"file": str(path)},
    })


def test_google_auth_identity_pool_exchanges_a_saml_assertion_from_a_file(saml):
    doc, _ = signed(saml, "entra", "signxml")
    path = saml.tmp / "assertion.b64"
    # `base64 -w0 response.xml; echo`: one line, ending with a newline, which google-auth
    # sends verbatim.
    path.write_text(sf.b64(doc) + "\n")
    creds = identity_pool_credentials(saml, path)
    transport = Recording()
    creds.refresh(transport)

    url, method, body, _ = transport.sent[-1]
    assert (url, method) == (saml.token_url, "POST")
    form = urllib.parse.parse_qs(body if isinstance(body, str) else body.decode())
    assert form["grant_type"] == [TE]
    assert form["subject_token_type"] == [sf.SAML2_TOKEN_TYPE]
    assert form["requested_token_type"] == ["urn:ietf:params:oauth:token-type:access_token"]
    assert form["audience"] == [AUDIENCE]
    assert form["subject_token"] == [sf.b64(doc) + "\n"]
    assert "scope" not in form  # no scopes configured: google-auth sends none

    key = saml.jwks.get_signing_key_from_jwt(creds.token)
    claims = jwt.decode(creds.token, key.key, algorithms=["ES256"], audience=AUDIENCE, issuer=saml.url)
    assert claims["sub"] == PROVIDERS["entra"].subject
    assert claims["groups"] == PROVIDERS["entra"].expect_groups


def test_google_auth_identity_pool_with_an_altered_assertion_is_refused(saml):
    """Twin of the above: the same kind of file, one attribute value altered after signing."""
    from google.auth import exceptions

    doc, _ = signed(saml, "entra", "signxml")
    group = PROVIDERS["entra"].attributes[ENTRA_GROUPS][0].encode()
    path = saml.tmp / "altered.b64"
    path.write_text(sf.b64(doc.replace(group, b"00000000-0000-0000-0000-000000000000")) + "\n")
    with pytest.raises(exceptions.OAuthError):
        identity_pool_credentials(saml, path).refresh(Recording())
