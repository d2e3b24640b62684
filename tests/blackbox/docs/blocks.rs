//! The fenced blocks of the documentation and the markers saying what a test does with
//! each (README, "Documentation is tested"):
//!
//! - a ```yaml block is Ferry configuration, checked with `ferry check`, unless an HTML
//!   comment `<!-- not-ferry-config: WHAT -->` right before it says what else it is (it
//!   is then only parsed as YAML);
//! - a shell block (```sh, ```bash, ```shell, ```console) is run by the test that
//!   `<!-- doc-test: run NAME -->` right before it names, or opens with a visible line
//!   `# illustrative: WHY` saying why no test runs it;
//! - `<!-- doc-test: run NAME file PATH -->` before any block writes it as `PATH`, at its
//!   place in test NAME's script.

use std::path::{Path, PathBuf};

/// Languages of shell blocks.
pub const SHELL: &[&str] = &["sh", "bash", "shell", "console", "zsh"];
/// Languages of YAML blocks.
pub const YAML: &[&str] = &["yaml", "yml"];
/// The opening of an illustrative shell block's first line.
pub const ILLUSTRATIVE: &str = "# illustrative:";

/// What an HTML comment right before a fence says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// `<!-- not-ferry-config: WHAT -->`.
    NotFerryConfig(String),
    /// `<!-- doc-test: run NAME [file PATH] -->`.
    Run { name: String, file: Option<String> },
    /// A `doc-test:` or `not-ferry-config` comment that does not parse.
    Unknown(String),
}

/// One fenced block.
#[derive(Debug, Clone)]
pub struct Block {
    /// The document, relative to the repository root.
    pub file: String,
    /// The line of the opening fence (1-based).
    pub line: usize,
    /// The first word of the info string (`yaml`, `sh`, …), lower case.
    pub lang: String,
    pub markers: Vec<Marker>,
    /// The content, without the fence's indentation.
    pub text: String,
}

impl Block {
    /// `README.md:123`.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    pub fn is_shell(&self) -> bool {
        SHELL.contains(&self.lang.as_str())
    }

    pub fn is_yaml(&self) -> bool {
        YAML.contains(&self.lang.as_str())
    }

    /// The test that runs this block (or writes it as a file), if any.
    pub fn run(&self) -> Option<(&str, Option<&str>)> {
        self.markers.iter().find_map(|m| match m {
            Marker::Run { name, file } => Some((name.as_str(), file.as_deref())),
            _ => None,
        })
    }

    pub fn not_ferry_config(&self) -> bool {
        self.markers
            .iter()
            .any(|m| matches!(m, Marker::NotFerryConfig(_)))
    }

    /// A shell block whose first line says why no test runs it.
    pub fn illustrative(&self) -> bool {
        self.text
            .lines()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| l.trim().strip_prefix(ILLUSTRATIVE))
            .is_some_and(|why| !why.trim().is_empty())
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the repository")
        .to_owned()
}

/// The tested documents: README.md and every Markdown file under docs/ and deploy/.
pub fn documents() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    let root = root();
    let mut docs = vec![root.join("README.md")];
    for dir in ["docs", "deploy"] {
        walk(&root.join(dir), &mut docs);
    }
    docs.sort();
    docs
}

/// Every block of every tested document.
pub fn all() -> Vec<Block> {
    let root = root();
    documents()
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).expect("read a document");
            let name = p.strip_prefix(&root).unwrap_or(p).display().to_string();
            parse(&name, &text)
        })
        .collect()
}

fn marker(comment: &str) -> Option<Marker> {
    let inner = comment
        .trim()
        .strip_prefix("<!--")?
        .strip_suffix("-->")?
        .trim();
    if let Some(what) = inner.strip_prefix("not-ferry-config:") {
        let what = what.trim();
        return Some(if what.is_empty() {
            Marker::Unknown(comment.to_owned())
        } else {
            Marker::NotFerryConfig(what.to_owned())
        });
    }
    if inner.starts_with("not-ferry-config") {
        return Some(Marker::Unknown(comment.to_owned()));
    }
    let rest = inner.strip_prefix("doc-test:")?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    Some(match words.as_slice() {
        ["run", name] => Marker::Run {
            name: (*name).to_owned(),
            file: None,
        },
        ["run", name, "file", path] => Marker::Run {
            name: (*name).to_owned(),
            file: Some((*path).to_owned()),
        },
        _ => Marker::Unknown(comment.to_owned()),
    })
}

/// The fenced blocks of one Markdown document, with the markers on the lines right
/// before each (HTML comments, blank lines between them allowed).
pub fn parse(file: &str, markdown: &str) -> Vec<Block> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let indent = line.len() - line.trim_start().len();
        let Some(info) = line.trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let lang = info
            .split(|c: char| c.is_whitespace() || c == '{' || c == ',')
            .next()
            .unwrap_or_default()
            .to_lowercase();
        let mut markers = Vec::new();
        let mut j = i;
        while j > 0 {
            j -= 1;
            let prev = lines[j].trim();
            if prev.is_empty() {
                continue;
            }
            match marker(prev) {
                Some(m) => markers.push(m),
                None => break,
            }
        }
        let mut body = Vec::new();
        let mut k = i + 1;
        while k < lines.len() && lines[k].trim() != "```" {
            let l = lines[k];
            let cut = l.len() - l.trim_start().len();
            body.push(l.get(cut.min(indent)..).unwrap_or_default());
            k += 1;
        }
        out.push(Block {
            file: file.to_owned(),
            line: i + 1,
            lang,
            markers,
            text: body.join("\n") + "\n",
        });
        i = k + 1;
    }
    out
}

/// A YAML comment is `#` after white space; in Ferry's examples it is always followed
/// by a space, so text like `message: ask #platform for access` — silently cut at the
/// `#` — is caught. Returns the offending lines.
pub fn comment_problems(yaml: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in yaml.lines() {
        let chars: Vec<char> = line.chars().collect();
        let mut quote: Option<char> = None;
        for (n, &c) in chars.iter().enumerate() {
            let before = n.checked_sub(1).and_then(|p| chars.get(p)).copied();
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if (c == '\'' || c == '"')
                    && before.is_none_or(|b| b.is_whitespace() || ":[{,".contains(b)) =>
                {
                    quote = Some(c);
                }
                None if c == '#' && before.is_none_or(char::is_whitespace) => {
                    if chars.get(n + 1).is_some_and(|a| !a.is_whitespace()) {
                        out.push(line.trim().to_owned());
                    }
                    break;
                }
                None => {}
            }
        }
    }
    out
}

/// What is wrong with the markers of `blocks`, given the tests that run blocks
/// (`runners`). Empty when every shell block is run or illustrative, every marker parses
/// and names a runner, and every block marked as other YAML parses as YAML.
pub fn problems(blocks: &[Block], runners: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for b in blocks {
        for m in &b.markers {
            if let Marker::Unknown(c) = m {
                out.push(format!(
                    "{}: marker {c} does not parse (see README, \"Documentation is tested\")",
                    b.at()
                ));
            }
        }
        let run = b.run();
        if let Some((name, file)) = run {
            if !runners.contains(&name) {
                out.push(format!(
                    "{}: `doc-test: run {name}` names no test (known: {runners:?})",
                    b.at()
                ));
            }
            if file.is_none() && !b.is_shell() {
                out.push(format!(
                    "{}: only shell blocks are run; give a {} block a `file PATH`",
                    b.at(),
                    b.lang
                ));
            }
        }
        if b.not_ferry_config() && !b.is_yaml() {
            out.push(format!(
                "{}: not-ferry-config marks YAML blocks only",
                b.at()
            ));
        }
        if b.is_shell() && run.is_none() && !b.illustrative() {
            out.push(format!(
                "{}: this {} block is neither run by a test (`<!-- doc-test: run NAME -->` \
                 before it) nor marked illustrative (a first line `{ILLUSTRATIVE} why`)",
                b.at(),
                b.lang
            ));
        }
        if b.is_yaml()
            && b.not_ferry_config()
            && let Err(e) = serde_saphyr::from_multiple::<serde_json::Value>(&b.text)
        {
            out.push(format!("{}: does not parse as YAML: {e}", b.at()));
        }
        if b.is_yaml() && !b.not_ferry_config() {
            for l in comment_problems(&b.text) {
                out.push(format!(
                    "{}: `{l}`: a `#` after a space starts a YAML comment; quote the value \
                     (or write `# ` for a comment)",
                    b.at()
                ));
            }
        }
    }
    out
}
