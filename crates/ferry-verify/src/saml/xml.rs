//! The XML a SAML assertion arrives in, admitted before it is parsed: a size limit, a
//! nesting limit, and no DTD, entity declaration or processing instruction (the XML
//! declaration aside). Only then is it parsed, with a node limit, into a tree whose
//! names keep the prefixes they were written with (canonicalization writes them out).

use roxmltree::{Document, Node, ParsingOptions};

use super::SamlError;

/// The XML-DSig namespace.
pub const DS: &str = "http://www.w3.org/2000/09/xmldsig#";

/// The largest document accepted, in bytes.
pub const MAX_XML_BYTES: usize = 256 * 1024;
/// The deepest element nesting accepted.
pub const MAX_DEPTH: usize = 32;
/// The most nodes (elements, texts, comments) a document may have.
pub const MAX_NODES: u32 = 20_000;
/// The most namespace bindings in scope at any element (real assertions use fewer than
/// fifteen): inclusive canonicalization writes them all, so this bounds its work.
pub const MAX_NAMESPACES: usize = 32;

/// Skips past `end`, starting at `from`; `None` when it never comes.
fn skip_past(bytes: &[u8], from: usize, end: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(end.len())
        .position(|w| w == end)
        .map(|p| from + p + end.len())
}

/// The end of a start or end tag beginning at `from` (after `<`), quotes respected;
/// and whether it closes itself (`/>`).
fn tag_end(bytes: &[u8], from: usize) -> Option<(usize, bool)> {
    let mut quote: Option<u8> = None;
    let mut i = from;
    while let Some(&b) = bytes.get(i) {
        match (quote, b) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b'>') => {
                let empty = i > from && bytes.get(i - 1) == Some(&b'/');
                return Some((i + 1, empty));
            }
            (None, _) => {}
        }
        i += 1;
    }
    None
}

/// Admits a document before any parser sees it: size, nesting depth, and the
/// constructs refused outright (DTDs and entity declarations, processing
/// instructions). A document this scan misreads is refused by the parser afterwards.
pub fn admit(xml: &str) -> Result<(), SamlError> {
    if xml.len() > MAX_XML_BYTES {
        return Err(SamlError::TooLarge);
    }
    let bytes = xml.as_bytes();
    let mut depth = 0usize;
    let mut i = 0usize;
    while let Some(p) = bytes
        .get(i..)
        .and_then(|r| r.iter().position(|&b| b == b'<'))
    {
        let at = i + p;
        let rest = bytes.get(at + 1..).unwrap_or_default();
        i = if rest.starts_with(b"!--") {
            skip_past(bytes, at + 4, b"-->").ok_or(SamlError::Malformed)?
        } else if rest.starts_with(b"![CDATA[") {
            skip_past(bytes, at + 9, b"]]>").ok_or(SamlError::Malformed)?
        } else if rest.starts_with(b"!") {
            return Err(SamlError::Dtd);
        } else if rest.starts_with(b"?") {
            // Only the XML declaration, and only at the very start.
            if at != 0 || !rest.starts_with(b"?xml ") {
                return Err(SamlError::ProcessingInstruction);
            }
            skip_past(bytes, at + 2, b"?>").ok_or(SamlError::Malformed)?
        } else if rest.starts_with(b"/") {
            depth = depth.saturating_sub(1);
            tag_end(bytes, at + 1).ok_or(SamlError::Malformed)?.0
        } else {
            let (end, empty) = tag_end(bytes, at + 1).ok_or(SamlError::Malformed)?;
            if !empty {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(SamlError::TooDeep);
                }
            }
            end
        };
    }
    Ok(())
}

/// Parses an admitted document: no DTD, at most [`MAX_NODES`] nodes, and no processing
/// instruction anywhere.
pub fn parse(xml: &str) -> Result<Document<'_>, SamlError> {
    admit(xml)?;
    let doc = Document::parse_with_options(
        xml,
        ParsingOptions {
            allow_dtd: false,
            nodes_limit: MAX_NODES,
            ..ParsingOptions::default()
        },
    )
    .map_err(|e| match e {
        roxmltree::Error::DtdDetected => SamlError::Dtd,
        roxmltree::Error::NodesLimitReached => SamlError::TooLarge,
        _ => SamlError::Malformed,
    })?;
    if doc.descendants().any(|n| n.is_pi()) {
        return Err(SamlError::ProcessingInstruction);
    }
    if doc
        .descendants()
        .any(|n| n.is_element() && n.namespaces().len() > MAX_NAMESPACES)
    {
        return Err(SamlError::TooManyNamespaces);
    }
    Ok(doc)
}

/// An element's qualified name as written (`saml:Assertion`).
pub fn qname<'a>(node: Node<'a, 'a>) -> &'a str {
    let text = node.document().input_text();
    let start = node.range().start + 1;
    let tail = text.get(start..).unwrap_or_default();
    let end = tail
        .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        .unwrap_or(tail.len());
    tail.get(..end).unwrap_or_default()
}

/// The prefix a qualified name was written with (`""` for none).
pub fn prefix_of(qname: &str) -> &str {
    qname.split_once(':').map_or("", |(p, _)| p)
}

/// XML's white space (`S` in XML 1.0 §2.3): the only characters trimmed from a text
/// value. Unicode spaces (U+00A0, U+3000, …) are part of the value: trimming them would
/// make `alice@example.com\u{a0}` the same subject as `alice@example.com`.
pub const XML_SPACE: [char; 4] = [' ', '\t', '\n', '\r'];

/// The value of `node`'s attribute `name` in no namespace (a same-named attribute in
/// another namespace, e.g. `o:Recipient`, is never read in its place).
pub fn attr<'a>(node: Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.attributes()
        .find(|a| a.namespace().is_none() && a.name() == name)
        .map(|a| a.value())
}

/// Whether `node` is the element `{ns}local`.
pub fn is(node: Node<'_, '_>, ns: &str, local: &str) -> bool {
    node.is_element() && node.tag_name().name() == local && node.tag_name().namespace() == Some(ns)
}

/// The element children of `node`.
pub fn elements<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(Node::is_element)
}

/// The one child `{ns}local` of `node`: `None` when absent, an error when repeated.
pub fn only_child<'a, 'i>(
    node: Node<'a, 'i>,
    ns: &str,
    local: &str,
) -> Result<Option<Node<'a, 'i>>, SamlError> {
    let mut found = elements(node).filter(|n| is(*n, ns, local));
    let first = found.next();
    if found.next().is_some() {
        return Err(SamlError::Structure(
            "an element that may appear once is repeated",
        ));
    }
    Ok(first)
}

/// The text of an element that holds only text (and comments, which canonical XML
/// drops): every text node, concatenated — never the first alone, so a comment cannot
/// cut a signed value short. An element child is refused.
pub fn text_of(node: Node<'_, '_>) -> Result<String, SamlError> {
    let mut out = String::new();
    for child in node.children() {
        if child.is_element() {
            return Err(SamlError::Structure("a text value holds an element"));
        }
        if let Some(t) = child.text().filter(|_| child.is_text()) {
            out.push_str(t);
        }
    }
    Ok(out)
}
