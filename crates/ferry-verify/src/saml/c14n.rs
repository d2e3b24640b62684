//! Canonical XML of one element's subtree, as XML signatures digest and sign it:
//! Exclusive XML Canonicalization 1.0 (with its `InclusiveNamespaces PrefixList`) and
//! Canonical XML 1.0, both without comments. One element may be left out with its
//! subtree (the enveloped-signature transform).
//!
//! Rules (W3C `xml-exc-c14n` and `xml-c14n`): empty elements as start/end pairs;
//! namespace declarations before attributes, sorted by prefix, the default first;
//! attributes sorted by namespace URI then local name; a declaration written only when
//! the nearest written ancestor did not already write the same binding (exclusive:
//! only for prefixes the element or its attributes use, and the listed ones);
//! text escapes `&`, `<`, `>`, CR; attribute values `&`, `<`, `"`, TAB, LF, CR.

use std::collections::BTreeMap;

use roxmltree::{Node, NodeId};

use super::xml::{prefix_of, qname};

/// Which canonicalization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `http://www.w3.org/2001/10/xml-exc-c14n#`, with the prefixes listed in
    /// `InclusiveNamespaces` (`""` for `#default`) treated inclusively.
    Exclusive(Vec<String>),
    /// `http://www.w3.org/TR/2001/REC-xml-c14n-20010315`.
    Inclusive,
}

const XML_PREFIX: &str = "xml";

/// The namespace bindings written so far on the path from the apex: prefix (`""` for
/// the default namespace) to URI.
type Rendered = BTreeMap<String, String>;

fn escape_text(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

fn escape_attr(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

/// The URI `prefix` is bound to at `node` (`""` when unbound or undeclared).
fn binding<'a>(node: Node<'a, '_>, prefix: &str) -> &'a str {
    let p = (!prefix.is_empty()).then_some(prefix);
    node.lookup_namespace_uri(p).unwrap_or("")
}

/// The prefixes whose declarations `node` may need to write, per the mode.
fn candidates(node: Node<'_, '_>, element_prefix: &str, mode: &Mode) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    match mode {
        Mode::Inclusive => {
            out.extend(
                node.namespaces()
                    .map(|ns| ns.name().unwrap_or("").to_owned()),
            );
            // The default namespace may have been undeclared here.
            out.push(String::new());
        }
        Mode::Exclusive(listed) => {
            out.push(element_prefix.to_owned());
            let text = node.document().input_text();
            for a in node.attributes() {
                let qn = text.get(a.range_qname()).unwrap_or_default();
                let p = prefix_of(qn);
                if !p.is_empty() {
                    out.push(p.to_owned());
                }
            }
            // Listed prefixes count only where they are in scope.
            out.extend(
                listed
                    .iter()
                    .filter(|p| p.is_empty() || !binding(node, p).is_empty())
                    .cloned(),
            );
        }
    }
    out.retain(|p| p != XML_PREFIX);
    out.sort();
    out.dedup();
    out
}

/// Writes `node`'s start tag; returns the bindings its subtree sees as written when it
/// wrote any (else its parent's stand).
fn start_tag(
    node: Node<'_, '_>,
    rendered: &Rendered,
    mode: &Mode,
    out: &mut String,
) -> Option<Rendered> {
    let name = qname(node);
    let mut mine: Option<Rendered> = None;
    out.push('<');
    out.push_str(name);
    for prefix in candidates(node, prefix_of(name), mode) {
        let uri = binding(node, &prefix);
        let written = rendered.get(&prefix).map_or("", String::as_str);
        // An empty default namespace needs writing only to undo a written one.
        if uri == written {
            continue;
        }
        if prefix.is_empty() {
            out.push_str(" xmlns=\"");
        } else {
            out.push_str(" xmlns:");
            out.push_str(&prefix);
            out.push_str("=\"");
        }
        escape_attr(uri, out);
        out.push('"');
        mine.get_or_insert_with(|| rendered.clone())
            .insert(prefix, uri.to_owned());
    }
    let text = node.document().input_text();
    let mut attrs: Vec<(&str, &str, &str, &str)> = node
        .attributes()
        .map(|a| {
            let qn = text.get(a.range_qname()).unwrap_or_default();
            (a.namespace().unwrap_or(""), a.name(), qn, a.value())
        })
        .collect();
    attrs.sort_by(|x, y| (x.0, x.1).cmp(&(y.0, y.1)));
    for (_, _, qn, value) in attrs {
        out.push(' ');
        out.push_str(qn);
        out.push_str("=\"");
        escape_attr(value, out);
        out.push('"');
    }
    out.push('>');
    mine
}

fn render(
    node: Node<'_, '_>,
    skip: Option<NodeId>,
    rendered: &Rendered,
    mode: &Mode,
    out: &mut String,
) {
    if Some(node.id()) == skip {
        return;
    }
    if node.is_element() {
        let mine = start_tag(node, rendered, mode, out);
        let scope = mine.as_ref().unwrap_or(rendered);
        for child in node.children() {
            render(child, skip, scope, mode, out);
        }
        out.push_str("</");
        out.push_str(qname(node));
        out.push('>');
    } else if node.is_text() {
        escape_text(node.text().unwrap_or_default(), out);
    }
    // Comments are dropped (the "without comments" algorithms); processing
    // instructions never get this far (refused when the document is parsed).
}

/// The canonical form of `apex`'s subtree, leaving out `skip` and its subtree.
pub fn canonicalize(apex: Node<'_, '_>, skip: Option<NodeId>, mode: &Mode) -> Vec<u8> {
    let mut out = String::new();
    render(apex, skip, &Rendered::new(), mode, &mut out);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c14n(xml: &str, path: &[&str], mode: &Mode) -> String {
        let doc = roxmltree::Document::parse(xml).unwrap();
        let mut node = doc.root_element();
        for name in path {
            node = node
                .children()
                .find(|n| n.tag_name().name() == *name)
                .unwrap();
        }
        String::from_utf8(canonicalize(node, None, mode)).unwrap()
    }

    #[test]
    fn exclusive_writes_only_the_namespaces_used() {
        let xml =
            r#"<r xmlns:a="urn:a" xmlns:b="urn:b" xmlns="urn:d"><a:x b="1" a:c="2"><y/></a:x></r>"#;
        assert_eq!(
            c14n(xml, &["x"], &Mode::Exclusive(vec![])),
            r#"<a:x xmlns:a="urn:a" b="1" a:c="2"><y xmlns="urn:d"></y></a:x>"#
        );
        assert_eq!(
            c14n(xml, &["x"], &Mode::Exclusive(vec!["b".into()])),
            r#"<a:x xmlns:a="urn:a" xmlns:b="urn:b" b="1" a:c="2"><y xmlns="urn:d"></y></a:x>"#
        );
    }

    #[test]
    fn inclusive_writes_every_namespace_in_scope_at_the_apex() {
        let xml = r#"<r xmlns:a="urn:a" xmlns:b="urn:b"><a:x><a:y/></a:x></r>"#;
        assert_eq!(
            c14n(xml, &["x"], &Mode::Inclusive),
            r#"<a:x xmlns:a="urn:a" xmlns:b="urn:b"><a:y></a:y></a:x>"#
        );
    }

    #[test]
    fn text_and_attributes_are_escaped_and_comments_dropped() {
        let xml = "<r><x a=\"&quot;&#9;&lt;\">1 &amp; 2 &gt; &#13;<!-- c -->3</x></r>";
        assert_eq!(
            c14n(xml, &["x"], &Mode::Exclusive(vec![])),
            "<x a=\"&quot;&#x9;&lt;\">1 &amp; 2 &gt; &#xD;3</x>"
        );
    }

    #[test]
    fn a_default_namespace_is_undeclared_only_under_a_written_one() {
        let xml = r#"<r xmlns="urn:d"><x><y xmlns=""/></x></r>"#;
        assert_eq!(
            c14n(xml, &["x"], &Mode::Exclusive(vec![])),
            r#"<x xmlns="urn:d"><y xmlns=""></y></x>"#
        );
        let xml = r#"<r><x><y xmlns=""/></x></r>"#;
        assert_eq!(
            c14n(xml, &["x"], &Mode::Exclusive(vec![])),
            "<x><y></y></x>"
        );
    }
}
