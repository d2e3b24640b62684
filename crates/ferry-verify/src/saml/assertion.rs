//! What a verified assertion says, read from the signed element only: issuer, subject,
//! the bearer confirmation, conditions and attributes, each checked against the
//! provider's policy.

use std::collections::BTreeMap;

use roxmltree::Node;

use super::xml::{XML_SPACE, attr, elements, is, only_child, text_of};
use super::{Assertion, SAML, SamlError, SamlPolicy};

const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
/// The most attributes, and values per attribute, an assertion may carry.
const MAX_ATTRIBUTES: usize = 256;
const MAX_VALUES: usize = 256;
/// The longest value read (NameID, attribute value, issuer), in bytes.
const MAX_VALUE_BYTES: usize = 4096;

fn bounded(s: String) -> Result<String, SamlError> {
    if s.len() > MAX_VALUE_BYTES {
        return Err(SamlError::TooLarge);
    }
    Ok(s)
}

/// `xs:dateTime` as Unix seconds: `YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm)`; SAML sends UTC.
pub fn date_time(s: &str) -> Result<i64, SamlError> {
    let bad = || SamlError::Time;
    let num = |r: std::ops::Range<usize>| -> Result<i64, SamlError> {
        let part = s.get(r).ok_or_else(bad)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse::<i64>().map_err(|_| bad())
    };
    let sep = |i: usize, c: u8| s.as_bytes().get(i) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return Err(bad());
    }
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let mut rest = s.get(19..).ok_or_else(bad)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        rest = frac.get(digits..).ok_or_else(bad)?;
    }
    let offset = match rest {
        "Z" | "" => 0,
        tz if tz.len() == 6
            && (tz.starts_with('+') || tz.starts_with('-'))
            && sep(s.len() - 3, b':') =>
        {
            let base = s.len() - 6;
            let mins = num(base + 1..base + 3)? * 60 + num(base + 4..base + 6)?;
            if tz.starts_with('-') {
                -mins * 60
            } else {
                mins * 60
            }
        }
        _ => return Err(bad()),
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + h * 3_600 + mi * 60 + sec - offset)
}

fn time_attr(node: Node<'_, '_>, name: &str) -> Result<Option<i64>, SamlError> {
    node.attribute(name).map(date_time).transpose()
}

/// The bearer confirmation: one whose data is unexpired and, when it names a
/// recipient, names one of the provider's. Returns its `NotOnOrAfter`.
fn bearer(subject: Node<'_, '_>, policy: &SamlPolicy<'_>, now: i64) -> Result<i64, SamlError> {
    let mut why = SamlError::NoBearer;
    for sc in elements(subject).filter(|n| is(*n, SAML, "SubjectConfirmation")) {
        if attr(sc, "Method") != Some(BEARER) {
            continue;
        }
        let Some(data) = only_child(sc, SAML, "SubjectConfirmationData")? else {
            continue;
        };
        let Some(until) = time_attr(data, "NotOnOrAfter")? else {
            continue;
        };
        if now >= until + policy.leeway {
            why = SamlError::Expired;
            continue;
        }
        if time_attr(data, "NotBefore")?.is_some_and(|nb| now + policy.leeway < nb) {
            why = SamlError::NotYetValid;
            continue;
        }
        if attr(data, "Recipient").is_some_and(|r| !policy.recipients.iter().any(|x| x == r)) {
            why = SamlError::Recipient;
            continue;
        }
        return Ok(until);
    }
    Err(why)
}

/// `Conditions`: the time window, every `AudienceRestriction` naming one of the
/// provider's audiences (at least one restriction), `OneTimeUse`.
fn conditions(
    assertion: Node<'_, '_>,
    policy: &SamlPolicy<'_>,
    now: i64,
) -> Result<(Option<i64>, bool), SamlError> {
    let c = only_child(assertion, SAML, "Conditions")?.ok_or(SamlError::Audience)?;
    if time_attr(c, "NotBefore")?.is_some_and(|nb| now + policy.leeway < nb) {
        return Err(SamlError::NotYetValid);
    }
    let until = time_attr(c, "NotOnOrAfter")?;
    if until.is_some_and(|t| now >= t + policy.leeway) {
        return Err(SamlError::Expired);
    }
    let mut restricted = false;
    for r in elements(c).filter(|n| is(*n, SAML, "AudienceRestriction")) {
        restricted = true;
        let mut ours = false;
        for a in elements(r).filter(|n| is(*n, SAML, "Audience")) {
            let a = text_of(a)?;
            ours |= policy
                .audiences
                .iter()
                .any(|x| *x == a.trim_matches(XML_SPACE));
        }
        if !ours {
            return Err(SamlError::Audience);
        }
    }
    if !restricted {
        return Err(SamlError::Audience);
    }
    let one_time = elements(c).any(|n| is(n, SAML, "OneTimeUse"));
    Ok((until, one_time))
}

fn attributes(assertion: Node<'_, '_>) -> Result<BTreeMap<String, Vec<String>>, SamlError> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut count = 0usize;
    for statement in elements(assertion).filter(|n| is(*n, SAML, "AttributeStatement")) {
        for a in elements(statement) {
            if is(a, SAML, "EncryptedAttribute") {
                return Err(SamlError::Encrypted);
            }
            if !is(a, SAML, "Attribute") {
                continue;
            }
            let name = bounded(attr(a, "Name").unwrap_or_default().to_owned())?;
            let values = out.entry(name).or_default();
            for v in elements(a).filter(|n| is(*n, SAML, "AttributeValue")) {
                let nil = v.attributes().any(|x| {
                    x.name() == "nil"
                        && x.namespace() == Some("http://www.w3.org/2001/XMLSchema-instance")
                        && matches!(x.value(), "true" | "1")
                });
                if !nil {
                    values.push(bounded(text_of(v)?)?);
                }
                count += 1;
                if values.len() > MAX_VALUES || count > MAX_ATTRIBUTES * 4 {
                    return Err(SamlError::TooLarge);
                }
            }
        }
    }
    if out.len() > MAX_ATTRIBUTES {
        return Err(SamlError::TooLarge);
    }
    Ok(out)
}

/// Reads an assertion's issuer, subject and attributes with no check at all, for
/// authoring policies offline (`ferry test`). Never on the token path.
pub fn read_unchecked(assertion: Node<'_, '_>) -> Result<Assertion, SamlError> {
    let issuer = only_child(assertion, SAML, "Issuer")?.ok_or(SamlError::Issuer)?;
    let subject = only_child(assertion, SAML, "Subject")?.ok_or(SamlError::NoSubject)?;
    let name_id = only_child(subject, SAML, "NameID")?.ok_or(SamlError::NoSubject)?;
    Ok(Assertion {
        id: attr(assertion, "ID").unwrap_or_default().to_owned(),
        issuer: text_of(issuer)?.trim_matches(XML_SPACE).to_owned(),
        subject: bounded(text_of(name_id)?.trim_matches(XML_SPACE).to_owned())?,
        name_id_format: attr(name_id, "Format").map(str::to_owned),
        attributes: attributes(assertion)?,
        not_on_or_after: 0,
        confirmed_until: 0,
        one_time_use: false,
    })
}

/// Reads and checks the signed assertion element.
pub fn read(
    assertion: Node<'_, '_>,
    policy: &SamlPolicy<'_>,
    now: i64,
) -> Result<Assertion, SamlError> {
    if attr(assertion, "Version") != Some("2.0") {
        return Err(SamlError::Structure("the assertion is not SAML 2.0"));
    }
    let id = bounded(attr(assertion, "ID").unwrap_or_default().to_owned())?;
    let issuer = only_child(assertion, SAML, "Issuer")?.ok_or(SamlError::Issuer)?;
    let issuer = text_of(issuer)?;
    if issuer.trim_matches(XML_SPACE) != policy.entity_id {
        return Err(SamlError::Issuer);
    }
    let subject = only_child(assertion, SAML, "Subject")?.ok_or(SamlError::NoSubject)?;
    if only_child(subject, SAML, "EncryptedID")?.is_some() {
        return Err(SamlError::Encrypted);
    }
    let name_id = only_child(subject, SAML, "NameID")?.ok_or(SamlError::NoSubject)?;
    let subject_value = bounded(text_of(name_id)?.trim_matches(XML_SPACE).to_owned())?;
    if subject_value.is_empty() {
        return Err(SamlError::NoSubject);
    }
    let confirmed_until = bearer(subject, policy, now)?;
    let (until, one_time_use) = conditions(assertion, policy, now)?;
    if until.unwrap_or(confirmed_until).max(confirmed_until)
        > now.saturating_add(policy.max_lifetime)
    {
        return Err(SamlError::Lifetime);
    }
    Ok(Assertion {
        id,
        issuer: issuer.trim_matches(XML_SPACE).to_owned(),
        subject: subject_value,
        name_id_format: attr(name_id, "Format").map(str::to_owned),
        attributes: attributes(assertion)?,
        not_on_or_after: until.unwrap_or(confirmed_until),
        confirmed_until,
        one_time_use,
    })
}

#[cfg(test)]
mod tests {
    use super::date_time;

    #[test]
    fn xs_date_times_read_as_unix_seconds() {
        assert_eq!(date_time("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(date_time("2026-12-07T01:02:03Z").unwrap(), 1_796_605_323);
        assert_eq!(
            date_time("2026-12-07T01:02:03.123Z").unwrap(),
            1_796_605_323
        );
        assert_eq!(
            date_time("2026-12-07T02:02:03+01:00").unwrap(),
            1_796_605_323
        );
        for bad in [
            "2026-12-07",
            "2026-13-07T01:02:03Z",
            "2026-12-07T01:02:03.Z",
            "2026-12-07T01:02:03Q",
            "+026-12-07T01:02:03Z",
        ] {
            assert!(date_time(bad).is_err(), "{bad}");
        }
    }
}
