//! Tests of the command line's parsing.

#![allow(clippy::unwrap_used, clippy::panic)]
use super::*;

#[test]
fn a_kid_may_begin_with_a_hyphen() {
    for args in [
        vec![
            "ferry", "keys", "revoke", "--config", "f.yaml", "-Tq9x", "--force",
        ],
        vec![
            "ferry", "keys", "revoke", "-Tq9x", "--config", "f.yaml", "--force",
        ],
    ] {
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.command {
            Command::Keys {
                command: KeysCommand::Revoke { kid, force, .. },
            } => assert_eq!((kid.as_str(), force), ("-Tq9x", true)),
            other => panic!("{other:?}"),
        }
    }
}
