//! `--subpath`: the one rule for the URL prefix the UI is served under.
//!
//! It is parsed once, by clap, into a [`Subpath`]; the network plan (gradio's `root_path`,
//! the printed URL) and the proxy (which strips the prefix) only ever see the parsed value,
//! so they cannot disagree about what is valid (issue #18: they once did, on `a/../b` and `~`).

use std::fmt;
use std::str::FromStr;

/// A URL path prefix without surrounding slashes (`sd`, `tools/sd`), or the root (no prefix,
/// from `""` or `/`).
///
/// Segments are non-empty, neither `.` nor `..`, and made of RFC 3986 unreserved characters
/// (letters, digits, `-`, `.`, `_`, `~`): the prefix needs no escaping and cannot climb.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subpath(String);

/// A `--subpath` that is not a plain path prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a path prefix: use letters, digits, `-`, `_`, `.`, `~` and `/`, with no \
     empty, `.` or `..` segment"
)]
pub struct SubpathError(String);

impl Subpath {
    /// Trims surrounding slashes and checks the rest.
    pub fn parse(raw: &str) -> Result<Subpath, SubpathError> {
        let trimmed = raw.trim_matches('/');
        if trimmed.is_empty() {
            return Ok(Subpath::default());
        }
        let valid = trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~/".contains(&b))
            && trimmed
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if valid {
            Ok(Subpath(trimmed.to_owned()))
        } else {
            Err(SubpathError(raw.to_owned()))
        }
    }

    /// Without surrounding slashes (`sd`); empty for the root.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when there is no prefix.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The prefix as the proxy matches it (`/sd`), `None` for the root.
    pub fn prefix(&self) -> Option<String> {
        (!self.is_root()).then(|| format!("/{}", self.0))
    }
}

impl FromStr for Subpath {
    type Err = SubpathError;

    fn from_str(raw: &str) -> Result<Subpath, SubpathError> {
        Subpath::parse(raw)
    }
}

impl fmt::Display for Subpath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #18, bug 3: one table for every user of `--subpath`.
    #[test]
    fn i18_one_rule_set() {
        let table: &[(&str, Option<&str>)] = &[
            ("", Some("")),
            ("/", Some("")),
            ("sd", Some("sd")),
            ("/sd", Some("sd")),
            ("sd/", Some("sd")),
            ("/a/b/", Some("a/b")),
            ("~x", Some("~x")),
            ("v1.2_x-y", Some("v1.2_x-y")),
            ("a b", None),
            ("/a/../b", None),
            ("a/./b", None),
            ("..", None),
            ("a//b", None),
            ("a%2fb", None),
            ("a?b", None),
            ("é", None),
        ];
        for (raw, expected) in table {
            let parsed = Subpath::parse(raw);
            assert_eq!(
                parsed.as_ref().ok().map(Subpath::as_str),
                *expected,
                "{raw:?}: {parsed:?}"
            );
        }
        assert_eq!(
            Subpath::parse("/sd/").unwrap().prefix().as_deref(),
            Some("/sd")
        );
        assert_eq!(Subpath::parse("/").unwrap().prefix(), None);
        assert_eq!(
            Subpath::parse("a b").unwrap_err().to_string(),
            "`a b` is not a path prefix: use letters, digits, `-`, `_`, `.`, `~` and `/`, with \
             no empty, `.` or `..` segment"
        );
    }
}
