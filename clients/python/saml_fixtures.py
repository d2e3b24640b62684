"""SAML 2.0 assertions as real identity providers lay them out, signed by tools Ferry did
not write: Python's signxml and the xmlsec1 command line (XML Security Library).

Keys and self-signed certificates come from the `openssl` command line (RSA-2048 and EC
P-256). Each layout below follows the public documentation (and sample messages) of the
identity provider it is named after; the source is cited at each builder. What a layout
decides: the namespace prefixes (or default namespaces), which element is signed (the
Assertion, the Response, or both), the ds:Signature's own prefix and KeyInfo, the
InclusiveNamespaces PrefixList, the attribute names and value types, the whitespace, and
the precision of the timestamps.

A fixture is built in three steps: `build(layout, claims)` gives the unsigned document (a
samlp:Response holding the Assertion, or the bare Assertion), `sign(...)` signs the
elements the layout's IdP signs, innermost first, with one of the two tools, and
`xmlsec_verify(...)` checks every signature with xmlsec1, independently of the tool that
made it. `write_metadata(...)` writes the IdP's SAML metadata (EntityDescriptor) in the
IdP's own style.
"""

import base64
import copy
import dataclasses
import datetime
import pathlib
import re
import subprocess
import tempfile
import uuid
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
EC = "http://www.w3.org/2001/10/xml-exc-c14n#"
XS = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
INC_C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
SIGNATURE_METHODS = {
    "rsa": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "ec": "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "ec384": "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
}
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
# Other algorithms, for fixtures that depart from the layouts' defaults.
RSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
RSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
ECDSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"
SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"
SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"

SAML2_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:saml2"


# ---------------------------------------------------------------------------------------
# Keys and certificates


@dataclasses.dataclass
class Idp:
    """An identity provider's signing key: a private key and its self-signed certificate,
    both PEM files written by the openssl command line."""

    name: str
    kind: str  # "rsa" (RSA-2048), "ec" (P-256) or "ec384" (P-384)
    key: pathlib.Path
    cert: pathlib.Path

    @property
    def cert_pem(self):
        return self.cert.read_text()

    @property
    def cert_b64(self):
        """The certificate's DER in base64 on one line, as in ds:X509Certificate."""
        body = self.cert_pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
        return "".join(body.split())


def make_idp(directory, name, kind="rsa"):
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / f"{name}.key.pem", directory / f"{name}.cert.pem"
    if kind == "rsa":
        newkey = ["-newkey", "rsa:2048"]
    elif kind in ("ec", "ec384"):
        curve = "P-256" if kind == "ec" else "P-384"
        newkey = ["-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{curve}"]
    else:
        raise ValueError(kind)
    subprocess.run(
        ["openssl", "req", "-x509", *newkey, "-sha256", "-nodes", "-days", "3650",
         "-subj", f"/CN={name} SAML signing", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    return Idp(name, kind, key, cert)


# ---------------------------------------------------------------------------------------
# What an assertion says


@dataclasses.dataclass
class Claims:
    issuer: str
    subject: str
    audience: str  # the SP entity id in AudienceRestriction
    recipient: str  # SubjectConfirmationData@Recipient and Response@Destination
    attributes: dict  # Name -> list of values
    now: datetime.datetime = dataclasses.field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc))
    lifetime: datetime.timedelta = datetime.timedelta(minutes=5)
    skew: datetime.timedelta = datetime.timedelta(minutes=1)  # NotBefore = now - skew (IdPs back-date it)
    in_response_to: str = None  # None: IdP-initiated
    assertion_id: str = None
    response_id: str = None

    def ids(self):
        """The Response's and the Assertion's ID in this layout's style (set once)."""
        if self.assertion_id is None:
            self.assertion_id = "_" + str(uuid.uuid4())
        if self.response_id is None:
            self.response_id = "_" + str(uuid.uuid4())
        return self.response_id, self.assertion_id


def instant(t, digits=3):
    """xs:dateTime in UTC with DIGITS fractional digits (0: none)."""
    s = t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        s += "." + f"{t.microsecond:06d}"[:digits]
    return s + "Z"


def compact(xml):
    """Drops the indentation between tags: most IdPs send their messages on one line."""
    return re.sub(r">\s+<", "><", xml.strip())


def attr(value):
    return quoteattr(value)


# ---------------------------------------------------------------------------------------
# Layouts. Each builder returns the whole samlp:Response (with its Assertion) as text,
# unsigned; `build` takes the bare Assertion out of it when asked.


@dataclasses.dataclass(frozen=True)
class Layout:
    name: str
    key: str  # "rsa" or "ec"
    signs: tuple  # ("assertion",), ("response",) or ("assertion", "response"): innermost first
    sig_prefix: str  # prefix of ds:Signature; "" = default namespace xmlns="...xmldsig#"
    prefix_list: str  # InclusiveNamespaces PrefixList of exclusive c14n, or ""
    builder: object
    key_name: bool = False  # KeyInfo carries a KeyName before X509Data (Keycloak)


def entra_response(c, digits=3):
    """Microsoft Entra ID (and AD FS, same shape): the protocol envelope is samlp:, the
    Issuer and Assertion are in the default namespace (xmlns="...:assertion"), only the
    Assertion is signed (Entra's default "Sign SAML assertion"), ds:Signature after the
    Assertion's Issuer, exclusive c14n, rsa-sha256, attribute values untyped, one line.
    Sources: learn.microsoft.com/en-us/entra/identity-platform/single-sign-on-saml-protocol
    (the sample Response), .../identity-platform/reference-saml-tokens (claim URIs such as
    http://schemas.microsoft.com/ws/2008/06/identity/claims/groups and
    http://schemas.microsoft.com/identity/claims/tenantid), .../enterprise-apps/
    certificate-signing-options ("Sign SAML assertion", SHA-256); for AD FS
    learn.microsoft.com/en-us/windows-server/identity/ad-fs/technical-reference/
    the-role-of-claims (http://schemas.xmlsoap.org/claims/Group) and AD FS's entity id
    form http://<host>/adfs/services/trust."""
    rid, aid = c.ids()
    now = instant(c.now, digits)
    irt = f" InResponseTo={attr(c.in_response_to)}" if c.in_response_to else ""
    attrs = "".join(
        f"<Attribute Name={attr(name)}>" + "".join(f"<AttributeValue>{escape(v)}</AttributeValue>" for v in values)
        + "</Attribute>"
        for name, values in c.attributes.items()
    )
    return compact(f"""
<samlp:Response ID="{rid}" Version="2.0" IssueInstant="{now}" Destination={attr(c.recipient)}{irt} xmlns:samlp="{SAMLP}">
  <Issuer xmlns="{SAML}">{escape(c.issuer)}</Issuer>
  <samlp:Status><samlp:StatusCode Value="{SUCCESS}"/></samlp:Status>
  <Assertion ID="{aid}" IssueInstant="{now}" Version="2.0" xmlns="{SAML}">
    <Issuer>{escape(c.issuer)}</Issuer>
    <Subject>
      <NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">{escape(c.subject)}</NameID>
      <SubjectConfirmation Method="{BEARER}">
        <SubjectConfirmationData{irt} NotOnOrAfter="{instant(c.now + c.lifetime, digits)}" Recipient={attr(c.recipient)}/>
      </SubjectConfirmation>
    </Subject>
    <Conditions NotBefore="{instant(c.now - c.skew, digits)}" NotOnOrAfter="{instant(c.now + c.lifetime, digits)}">
      <AudienceRestriction><Audience>{escape(c.audience)}</Audience></AudienceRestriction>
    </Conditions>
    <AttributeStatement>{attrs}</AttributeStatement>
    <AuthnStatement AuthnInstant="{now}" SessionIndex="{aid}">
      <AuthnContext><AuthnContextClassRef>{PASSWORD}</AuthnContextClassRef></AuthnContext>
    </AuthnStatement>
  </Assertion>
</samlp:Response>""")


def okta_response(c):
    """Okta: saml2p: for the protocol, saml2: for the assertion (each declared where it is
    first used, as OpenSAML writes them), Issuer with Format entity, the Response AND the
    Assertion signed (Okta's "Response: Signed" and "Assertion Signature: Signed"), both
    with exclusive c14n carrying <ec:InclusiveNamespaces PrefixList="xs"/> because the
    AttributeValues are typed xsi:type="xs:string" with xmlns:xs declared on the Assertion
    (a prefix used only inside an attribute value, which exclusive c14n would otherwise
    drop). Sources: developer.okta.com/docs/concepts/saml/ (the sample SAML Response and
    Assertion), help.okta.com "Create SAML app integrations" (the signing options,
    attribute statements such as groups with NameFormat unspecified)."""
    rid, aid = c.ids()
    now = instant(c.now)
    irt = f" InResponseTo={attr(c.in_response_to)}" if c.in_response_to else ""
    attrs = "".join(
        f'<saml2:Attribute Name={attr(name)} NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified">'
        + "".join(
            f'<saml2:AttributeValue xmlns:xsi="{XSI}" xsi:type="xs:string">{escape(v)}</saml2:AttributeValue>'
            for v in values
        )
        + "</saml2:Attribute>"
        for name, values in c.attributes.items()
    )
    entity = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
    return compact(f"""
<saml2p:Response Destination={attr(c.recipient)} ID="{rid}"{irt} IssueInstant="{now}" Version="2.0" xmlns:saml2p="{SAMLP}">
  <saml2:Issuer Format="{entity}" xmlns:saml2="{SAML}">{escape(c.issuer)}</saml2:Issuer>
  <saml2p:Status xmlns:saml2p="{SAMLP}"><saml2p:StatusCode Value="{SUCCESS}"/></saml2p:Status>
  <saml2:Assertion ID="{aid}" IssueInstant="{now}" Version="2.0" xmlns:saml2="{SAML}" xmlns:xs="{XS}">
    <saml2:Issuer Format="{entity}" xmlns:saml2="{SAML}">{escape(c.issuer)}</saml2:Issuer>
    <saml2:Subject xmlns:saml2="{SAML}">
      <saml2:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">{escape(c.subject)}</saml2:NameID>
      <saml2:SubjectConfirmation Method="{BEARER}">
        <saml2:SubjectConfirmationData{irt} NotOnOrAfter="{instant(c.now + c.lifetime)}" Recipient={attr(c.recipient)}/>
      </saml2:SubjectConfirmation>
    </saml2:Subject>
    <saml2:Conditions NotBefore="{instant(c.now - c.skew)}" NotOnOrAfter="{instant(c.now + c.lifetime)}" xmlns:saml2="{SAML}">
      <saml2:AudienceRestriction><saml2:Audience>{escape(c.audience)}</saml2:Audience></saml2:AudienceRestriction>
    </saml2:Conditions>
    <saml2:AuthnStatement AuthnInstant="{now}" SessionIndex="{aid}" xmlns:saml2="{SAML}">
      <saml2:AuthnContext><saml2:AuthnContextClassRef>{PASSWORD}</saml2:AuthnContextClassRef></saml2:AuthnContext>
    </saml2:AuthnStatement>
    <saml2:AttributeStatement xmlns:saml2="{SAML}">{attrs}</saml2:AttributeStatement>
  </saml2:Assertion>
</saml2p:Response>""")


def keycloak_response(c, split_roles=False):
    """Keycloak: samlp: and saml: both declared on the Response, the Assertion written as
    <saml:Assertion xmlns="urn:...:assertion"> (prefix and default namespace at once),
    dsig: for the signature with a KeyName before X509Data, only the Response signed
    (client settings "Sign documents" ON, "Sign assertions" OFF, the defaults), an ECDSA
    key (realm key provider "ecdsa-generated", client signature algorithm ECDSA_SHA256),
    attribute values typed xs:string with xmlns:xs and xmlns:xsi declared on each value,
    one line. Group list mapper: one Attribute "member" with one value per group; role
    list mapper with "Single Role Attribute" OFF (SPLIT_ROLES): one Attribute "Role" per
    role. Sources: keycloak.org/docs/latest/server_admin/ ("Creating a SAML client":
    Signature and Encryption, "Keys" providers, SAML mappers "Group list", "Role list"),
    and the realm's IdP descriptor /realms/{realm}/protocol/saml/descriptor."""
    rid, aid = c.ids()
    now = instant(c.now)
    irt = f" InResponseTo={attr(c.in_response_to)}" if c.in_response_to else ""
    typed = f'xmlns:xs="{XS}" xmlns:xsi="{XSI}" xsi:type="xs:string"'
    basic = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
    attrs = ""
    for name, values in c.attributes.items():
        groups = [[v] for v in values] if split_roles and name == "Role" else [values]
        for vs in groups:
            attrs += f'<saml:Attribute FriendlyName={attr(name)} Name={attr(name)} NameFormat="{basic}">' + "".join(
                f"<saml:AttributeValue {typed}>{escape(v)}</saml:AttributeValue>" for v in vs
            ) + "</saml:Attribute>"
    return compact(f"""
<samlp:Response xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" Destination={attr(c.recipient)} ID="{rid}"{irt} IssueInstant="{now}" Version="2.0">
  <saml:Issuer>{escape(c.issuer)}</saml:Issuer>
  <samlp:Status><samlp:StatusCode Value="{SUCCESS}"/></samlp:Status>
  <saml:Assertion xmlns="{SAML}" ID="{aid}" IssueInstant="{now}" Version="2.0">
    <saml:Issuer>{escape(c.issuer)}</saml:Issuer>
    <saml:Subject>
      <saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified">{escape(c.subject)}</saml:NameID>
      <saml:SubjectConfirmation Method="{BEARER}">
        <saml:SubjectConfirmationData{irt} NotOnOrAfter="{instant(c.now + c.lifetime)}" Recipient={attr(c.recipient)}/>
      </saml:SubjectConfirmation>
    </saml:Subject>
    <saml:Conditions NotBefore="{instant(c.now - c.skew)}" NotOnOrAfter="{instant(c.now + c.lifetime)}">
      <saml:AudienceRestriction><saml:Audience>{escape(c.audience)}</saml:Audience></saml:AudienceRestriction>
    </saml:Conditions>
    <saml:AuthnStatement AuthnInstant="{now}" SessionIndex="{uuid.uuid4()}::{uuid.uuid4()}" SessionNotOnOrAfter="{instant(c.now + datetime.timedelta(hours=10))}">
      <saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified</saml:AuthnContextClassRef></saml:AuthnContext>
    </saml:AuthnStatement>
    <saml:AttributeStatement>{attrs}</saml:AttributeStatement>
  </saml:Assertion>
</samlp:Response>""")


def shibboleth_response(c):
    """Shibboleth IdP (v4/v5, OpenSAML): saml2p:/saml2:, each declared on the element that
    first uses it, the Assertion signed (relying-party profile SAML2.SSO with
    signAssertions=true and encryptAssertions=false; the IdP's own defaults differ, see the
    notes in test_saml.py), exclusive c14n with <ec:InclusiveNamespaces PrefixList="xsd"/>
    for values typed xsi:type="xsd:string", transient NameID with NameQualifier and
    SPNameQualifier, attributes named by OID with NameFormat uri and a FriendlyName
    (eduPersonPrincipalName urn:oid:1.3.6.1.4.1.5923.1.1.1.6, eduPersonEntitlement
    ...1.1.7, eduPersonScopedAffiliation ...1.1.9), pretty-printed (whitespace inside the
    signed content) and instants with microseconds (java.time.Instant). Sources:
    shibboleth.atlassian.net/wiki/spaces/IDP5 SAML2SSOConfiguration (signing and
    encryption options), the attribute registry's default mappings (urn:oid names), and
    the eduPerson schema (refeds.org/eduperson)."""
    rid, aid = c.ids()
    now = instant(c.now, 6)
    irt = f" InResponseTo={attr(c.in_response_to)}" if c.in_response_to else ""
    friendly = {
        "urn:oid:1.3.6.1.4.1.5923.1.1.1.6": "eduPersonPrincipalName",
        "urn:oid:1.3.6.1.4.1.5923.1.1.1.7": "eduPersonEntitlement",
        "urn:oid:1.3.6.1.4.1.5923.1.1.1.9": "eduPersonScopedAffiliation",
        "urn:oid:0.9.2342.19200300.100.1.3": "mail",
    }
    attrs = "\n".join(
        f'      <saml2:Attribute FriendlyName={attr(friendly.get(name, name))} Name={attr(name)} '
        f'NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri">\n'
        + "".join(
            f'        <saml2:AttributeValue xmlns:xsd="{XS}" xmlns:xsi="{XSI}" xsi:type="xsd:string">'
            f"{escape(v)}</saml2:AttributeValue>\n"
            for v in values
        )
        + "      </saml2:Attribute>"
        for name, values in c.attributes.items()
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<saml2p:Response xmlns:saml2p="{SAMLP}" Destination={attr(c.recipient)} ID="{rid}"{irt} IssueInstant="{now}" Version="2.0">
  <saml2:Issuer xmlns:saml2="{SAML}">{escape(c.issuer)}</saml2:Issuer>
  <saml2p:Status>
    <saml2p:StatusCode Value="{SUCCESS}"/>
  </saml2p:Status>
  <saml2:Assertion xmlns:saml2="{SAML}" ID="{aid}" IssueInstant="{now}" Version="2.0">
    <saml2:Issuer>{escape(c.issuer)}</saml2:Issuer>
    <saml2:Subject>
      <saml2:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:transient" NameQualifier={attr(c.issuer)} SPNameQualifier={attr(c.audience)}>AAdzZWNyZXQx{uuid.uuid4().hex}</saml2:NameID>
      <saml2:SubjectConfirmation Method="{BEARER}">
        <saml2:SubjectConfirmationData Address="127.0.0.1"{irt} NotOnOrAfter="{instant(c.now + c.lifetime, 6)}" Recipient={attr(c.recipient)}/>
      </saml2:SubjectConfirmation>
    </saml2:Subject>
    <saml2:Conditions NotBefore="{instant(c.now - c.skew, 6)}" NotOnOrAfter="{instant(c.now + c.lifetime, 6)}">
      <saml2:AudienceRestriction>
        <saml2:Audience>{escape(c.audience)}</saml2:Audience>
      </saml2:AudienceRestriction>
    </saml2:Conditions>
    <saml2:AuthnStatement AuthnInstant="{now}" SessionIndex="_{uuid.uuid4().hex}">
      <saml2:SubjectLocality Address="127.0.0.1"/>
      <saml2:AuthnContext>
        <saml2:AuthnContextClassRef>{PASSWORD}</saml2:AuthnContextClassRef>
      </saml2:AuthnContext>
    </saml2:AuthnStatement>
    <saml2:AttributeStatement>
{attrs}
    </saml2:AttributeStatement>
  </saml2:Assertion>
</saml2p:Response>
"""


LAYOUTS = {
    "entra": Layout("entra", "rsa", ("assertion",), "", "", entra_response),
    "adfs": Layout("adfs", "rsa", ("assertion",), "ds", "", entra_response),
    "okta": Layout("okta", "rsa", ("assertion", "response"), "ds", "xs", okta_response),
    "keycloak": Layout("keycloak", "ec", ("response",), "dsig", "", keycloak_response, key_name=True),
    "shibboleth": Layout("shibboleth", "rsa", ("assertion",), "ds", "xsd", shibboleth_response),
}


def build(layout, claims, bare=False, **options):
    """The unsigned document: the Response, or (BARE) the Assertion alone, which then
    carries the namespace declarations it used from the Response (as an IdP that sends a
    bare assertion declares them)."""
    root = etree.fromstring(LAYOUTS[layout].builder(claims, **options).encode())
    if bare:
        assertion = root.find(f"{{{SAML}}}Assertion")
        root = etree.fromstring(etree.tostring(assertion))
    return etree.tostring(root)


# ---------------------------------------------------------------------------------------
# Signing


def element_by_id(root, id_):
    found = root.xpath("//*[@ID=$id]", id=id_)
    assert len(found) == 1, f"{id_}: {len(found)} elements"
    return found[0]


def insert_after_issuer(element, node):
    issuer = element.find(f"{{{SAML}}}Issuer")
    issuer.addnext(node)
    # addnext moves the Issuer's tail (indentation) to the new node; give the Issuer one too.
    if node.tail is not None and issuer.tail is None:
        issuer.tail = node.tail


def signature_template(layout, idp, ref_id, c14n, algorithms):
    """An empty ds:Signature in the layout's style for xmlsec1 to fill in."""
    p = f"{layout.sig_prefix}:" if layout.sig_prefix else ""
    decl = f'xmlns:{layout.sig_prefix}="{DS}"' if layout.sig_prefix else f'xmlns="{DS}"'
    inclusive = ""
    if c14n == EXC_C14N and layout.prefix_list:
        inclusive = f'<ec:InclusiveNamespaces xmlns:ec="{EC}" PrefixList="{layout.prefix_list}"/>'
    key_name = f"<{p}KeyName>{idp.name}</{p}KeyName>" if layout.key_name else ""
    return compact(f"""
<{p}Signature {decl}>
  <{p}SignedInfo>
    <{p}CanonicalizationMethod Algorithm="{c14n}"/>
    <{p}SignatureMethod Algorithm="{algorithms[0]}"/>
    <{p}Reference URI="#{ref_id}">
      <{p}Transforms>
        <{p}Transform Algorithm="{ENVELOPED}"/>
        <{p}Transform Algorithm="{c14n}">{inclusive}</{p}Transform>
      </{p}Transforms>
      <{p}DigestMethod Algorithm="{algorithms[1]}"/>
      <{p}DigestValue/>
    </{p}Reference>
  </{p}SignedInfo>
  <{p}SignatureValue/>
  <{p}KeyInfo>{key_name}<{p}X509Data><{p}X509Certificate/></{p}X509Data></{p}KeyInfo>
</{p}Signature>""")


ID_ATTRS = ["--id-attr:ID", f"{SAML}:Assertion", "--id-attr:ID", f"{SAMLP}:Response"]


def signature_xpath(id_):
    return f"//*[@ID='{id_}']/*[local-name()='Signature' and namespace-uri()='{DS}']"


def sign_xmlsec1(root, layout, idp, element, c14n, algorithms):
    """Signs ELEMENT (in ROOT) with the xmlsec1 command line, from a template carrying an
    empty Signature after the element's Issuer."""
    id_ = element.get("ID")
    insert_after_issuer(element, etree.fromstring(signature_template(layout, idp, id_, c14n, algorithms)))
    with tempfile.TemporaryDirectory() as d:
        src, out = pathlib.Path(d) / "in.xml", pathlib.Path(d) / "out.xml"
        src.write_bytes(etree.tostring(root))
        run = subprocess.run(
            ["xmlsec1", "--sign", "--privkey-pem", f"{idp.key},{idp.cert}", *ID_ATTRS,
             "--node-xpath", signature_xpath(id_), "--output", out, src],
            capture_output=True, text=True,
        )
        assert run.returncode == 0, run.stderr
        return etree.fromstring(out.read_bytes())


def sign_signxml(root, layout, idp, element, c14n, algorithms):
    """Signs ELEMENT (in ROOT) with signxml's XMLSigner: an enveloped signature at a
    placeholder after the element's Issuer, referencing the element's ID."""
    signer = _signxml_signer()(
        signature_algorithm=algorithms[0],
        digest_algorithm=algorithms[1],
        c14n_algorithm=c14n,
    )
    signer.namespaces = {layout.sig_prefix or None: DS}
    placeholder = etree.Element(f"{{{DS}}}Signature", Id="placeholder", nsmap=signer.namespaces)
    insert_after_issuer(element, placeholder)
    prefixes = [layout.prefix_list] if c14n == EXC_C14N and layout.prefix_list else None
    return signer.sign(
        root, key=idp.key.read_bytes(), cert=idp.cert_pem, reference_uri=element.get("ID"),
        id_attribute="ID", inclusive_ns_prefixes=prefixes, key_name=idp.name if layout.key_name else None,
    )


def _signxml_signer():
    from signxml import XMLSigner

    class Signer(XMLSigner):
        """signxml 5.2.0 digests an enveloped reference with the InclusiveNamespaces
        PrefixList it is given but leaves the <ec:InclusiveNamespaces> element out of the
        reference's c14n Transform (it writes it only for detached and enveloping
        signatures), so no verifier can reproduce the digest. This writes the element
        where the XML Signature spec puts it; the digest and signature stay signxml's."""

        def _build_transforms_for_reference(self, *, transforms_node, reference, exclude_c14n_transform_element=True):
            super()._build_transforms_for_reference(
                transforms_node=transforms_node, reference=reference,
                exclude_c14n_transform_element=exclude_c14n_transform_element,
            )
            c14n = transforms_node[-1]
            if (reference.inclusive_ns_prefixes and c14n.get("Algorithm") == EXC_C14N
                    and c14n.find(f"{{{EC}}}InclusiveNamespaces") is None):
                etree.SubElement(c14n, f"{{{EC}}}InclusiveNamespaces", nsmap={"ec": EC},
                                 PrefixList=" ".join(reference.inclusive_ns_prefixes))

    return Signer


SIGNERS = {"xmlsec1": sign_xmlsec1, "signxml": sign_signxml}


def sign(document, layout, idp, tool, c14n=EXC_C14N, between=None, signature_method=None, digest_method=SHA256):
    """Signs the elements LAYOUT's IdP signs that DOCUMENT holds (an Assertion alone holds
    no Response), innermost first, with TOOL ("xmlsec1" or "signxml"). BETWEEN, if given,
    is called with the root after each signature but the last (to make a twin whose inner
    signature was broken before the outer one was made). The algorithms default to the
    layouts' own: rsa-sha256 or ecdsa-sha256 (by IDP's key) and sha256."""
    layout = LAYOUTS[layout]
    algorithms = (signature_method or SIGNATURE_METHODS[idp.kind], digest_method)
    root = etree.fromstring(document)
    targets = [t for t in layout.signs if t == "assertion" or root.tag == f"{{{SAMLP}}}Response"]
    for n, target in enumerate(targets):
        if target == "response":
            element = root if root.tag == f"{{{SAMLP}}}Response" else None
        else:
            element = root if root.tag == f"{{{SAML}}}Assertion" else root.find(f"{{{SAML}}}Assertion")
        if element is None:
            continue
        root = SIGNERS[tool](root, layout, idp, element, c14n, algorithms)
        if between is not None and n < len(targets) - 1:
            between(root)
    if layout.name == "shibboleth":  # OpenSAML writes the XML declaration
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return etree.tostring(root)


def signed_ids(document):
    """The IDs of the elements that carry a ds:Signature as a direct child."""
    root = etree.fromstring(document)
    return [s.getparent().get("ID") for s in root.iter(f"{{{DS}}}Signature")]


def xmlsec_verify(document, idp, id_=None):
    """Checks with the xmlsec1 command line the signature that is a child of the element
    with ID ID_ (default: every signature in DOCUMENT), with IDP's certificate as the only
    key. Returns True when all verify."""
    ids = [id_] if id_ else signed_ids(document)
    assert ids, "no signature"
    with tempfile.TemporaryDirectory() as d:
        src = pathlib.Path(d) / "doc.xml"
        src.write_bytes(document)
        for i in ids:
            run = subprocess.run(
                ["xmlsec1", "--verify", "--pubkey-cert-pem", idp.cert, "--enabled-key-data", "key-name",
                 *ID_ATTRS, "--node-xpath", signature_xpath(i), src],
                capture_output=True, text=True,
            )
            if run.returncode != 0:
                return False
    return True


def extract_assertion(document):
    """The Assertion of a signed Response, taken out as its own document (as an SP that
    received the Response would forward it): its signature still holds under exclusive
    c14n, which ignores the ancestors' namespace declarations."""
    root = etree.fromstring(document)
    return etree.tostring(copy.deepcopy(root.find(f"{{{SAML}}}Assertion")))


def b64(document, urlsafe=False, padded=True):
    s = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(document).decode()
    return s if padded else s.rstrip("=")


# ---------------------------------------------------------------------------------------
# Metadata


def _cert_lines(idp, wrap):
    if not wrap:
        return idp.cert_b64
    b = idp.cert_b64
    return "\n" + "\n".join(b[i:i + 64] for i in range(0, len(b), 64)) + "\n"


def write_metadata(path, style, entity_id, signing, encryption=(), sso_url="https://idp.example.test/sso"):
    """Writes IdP metadata (an EntityDescriptor) to PATH in STYLE: "entra" (default
    namespaces, a WS-Federation RoleDescriptor before the IDPSSODescriptor, KeyInfo in
    the default ds namespace; learn.microsoft.com/en-us/entra/identity-platform/
    federation-metadata), "md" (md:/ds: prefixes, as Okta's app metadata), "keycloak"
    (the realm's descriptor at /realms/{realm}/protocol/saml/descriptor: md: and ds:
    declared on the root, a KeyName before each X509Data, one KeyDescriptor per active
    realm key), or "shibboleth" (default md namespace, ds: KeyInfo, certificates wrapped
    at 64 columns, a shibmd:Scope extension, SAML 1.1 and 2.0 protocols, an
    AttributeAuthorityDescriptor; the IdP's generated metadata/idp-metadata.xml).
    SIGNING and ENCRYPTION are lists of Idp whose certificates go in KeyDescriptors with
    use="signing" and use="encryption" (ENCRYPTION: styles md and shibboleth)."""
    if style == "entra":
        keys = "".join(
            f'<KeyDescriptor use="signing"><KeyInfo xmlns="{DS}"><X509Data><X509Certificate>{i.cert_b64}'
            "</X509Certificate></X509Data></KeyInfo></KeyDescriptor>"
            for i in signing
        )
        xml = compact(f"""
<EntityDescriptor xmlns="{MD}" ID="_{uuid.uuid4()}" entityID={attr(entity_id)}>
  <RoleDescriptor xmlns:xsi="{XSI}" xmlns:fed="http://docs.oasis-open.org/wsfed/federation/200706" xsi:type="fed:SecurityTokenServiceType" protocolSupportEnumeration="http://docs.oasis-open.org/wsfed/federation/200706">
    {keys}
    <fed:ClaimTypesOffered><auth:ClaimType xmlns:auth="http://docs.oasis-open.org/wsfed/authorization/200706" Uri="http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"><auth:DisplayName>Name</auth:DisplayName></auth:ClaimType></fed:ClaimTypesOffered>
    <fed:PassiveRequestorEndpoint><wsa:EndpointReference xmlns:wsa="http://www.w3.org/2005/08/addressing"><wsa:Address>{escape(sso_url)}</wsa:Address></wsa:EndpointReference></fed:PassiveRequestorEndpoint>
  </RoleDescriptor>
  <IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    {keys}
    <SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location={attr(sso_url)}/>
    <SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location={attr(sso_url)}/>
    <SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location={attr(sso_url)}/>
  </IDPSSODescriptor>
</EntityDescriptor>""")
    elif style == "md":
        keys = "".join(
            f'<md:KeyDescriptor use="{use}"><ds:KeyInfo xmlns:ds="{DS}"><ds:X509Data><ds:X509Certificate>'
            f"{i.cert_b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
            for use, idps in (("signing", signing), ("encryption", encryption))
            for i in idps
        )
        xml = compact(f"""
<md:EntityDescriptor xmlns:md="{MD}" entityID={attr(entity_id)}>
  <md:IDPSSODescriptor WantAuthnRequestsSigned="false" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    {keys}
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location={attr(sso_url)}/>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location={attr(sso_url)}/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>""")
    elif style == "keycloak":
        keys = "".join(
            f'<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:KeyName>{escape(i.name)}</ds:KeyName><ds:X509Data>'
            f"<ds:X509Certificate>{i.cert_b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
            for i in signing
        )
        xml = f"""<md:EntityDescriptor xmlns="{MD}" xmlns:md="{MD}" xmlns:saml="{SAML}" xmlns:ds="{DS}" entityID={attr(entity_id)}>
   <md:IDPSSODescriptor WantAuthnRequestsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
      <md:KeyDescriptor use="signing-placeholder"/>
      <md:ArtifactResolutionService Binding="urn:oasis:names:tc:SAML:2.0:bindings:SOAP" Location={attr(sso_url)} index="0"/>
      <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
      <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat>
      <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location={attr(sso_url)}/>
   </md:IDPSSODescriptor>
</md:EntityDescriptor>""".replace('<md:KeyDescriptor use="signing-placeholder"/>', keys)
    elif style == "shibboleth":
        def kd(use, idps):
            return "".join(
                f"""
    <KeyDescriptor use="{use}">
      <ds:KeyInfo>
        <ds:X509Data>
          <ds:X509Certificate>{_cert_lines(i, True)}          </ds:X509Certificate>
        </ds:X509Data>
      </ds:KeyInfo>
    </KeyDescriptor>"""
                for i in idps
            )
        xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Shibboleth IdP's generated metadata (metadata/idp-metadata.xml), abridged. -->
<EntityDescriptor xmlns="{MD}" xmlns:ds="{DS}" xmlns:shibmd="urn:mace:shibboleth:metadata:1.0" xmlns:xml="http://www.w3.org/XML/1998/namespace" xmlns:mdui="urn:oasis:names:tc:SAML:metadata:ui" entityID={attr(entity_id)}>
  <IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol urn:oasis:names:tc:SAML:1.1:protocol urn:mace:shibboleth:1.0">
    <Extensions>
      <shibmd:Scope regexp="false">example.org</shibmd:Scope>
      <mdui:UIInfo><mdui:DisplayName xml:lang="en">Example University</mdui:DisplayName></mdui:UIInfo>
    </Extensions>{kd("signing", signing)}{kd("encryption", encryption)}
    <NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:transient</NameIDFormat>
    <SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location={attr(sso_url)}/>
  </IDPSSODescriptor>
  <AttributeAuthorityDescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:1.1:protocol">
    <Extensions><shibmd:Scope regexp="false">example.org</shibmd:Scope></Extensions>{kd("signing", signing)}
    <AttributeService Binding="urn:oasis:names:tc:SAML:1.0:bindings:SOAP-binding" Location={attr(sso_url)}/>
  </AttributeAuthorityDescriptor>
</EntityDescriptor>
"""
    else:
        raise ValueError(style)
    pathlib.Path(path).write_text(xml)
    etree.fromstring(xml.encode())  # well-formed
    return path
