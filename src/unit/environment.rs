//! `Environment=` assignments and `EnvironmentFile=` contents (systemd.exec(5)).
//!
//! `Environment="A=1" "B=two words" C=3`: words with systemd's quoting and C escapes
//! ([`super::exec::split_words`]), each `NAME=value`. An `EnvironmentFile=` holds one
//! `NAME=value` per line with systemd's quoting rules ([`parse_env_file`]). This is the one
//! parser for them: the loader uses it for files in the tree (and, for `gitproc check`, on
//! the host), and the spawner for absolute paths, which it reads at each start as systemd
//! does.

use super::exec::{Located, env_name_is_valid, split_words};

/// Parses one `Environment=` value (after specifier expansion of each word by `spec`).
pub fn parse_environment(
    value: &str,
    spec: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<Vec<(String, String)>, Located> {
    let mut out = Vec::new();
    for w in split_words(value)? {
        let text = spec(&w.text).map_err(|m| (w.offset, m))?;
        match text.split_once('=') {
            Some((name, val)) if env_name_is_valid(name) => {
                out.push((name.to_string(), val.to_string()))
            }
            _ => {
                return Err((
                    w.offset,
                    format!(
                        "invalid environment assignment {text:?}: expected NAME=value (quote it if the value has spaces)"
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// What an `EnvironmentFile=` assigns, in file order (a later assignment of the same name
/// wins, as for any environment list), and what systemd would log about it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EnvFile {
    pub vars: Vec<(String, String)>,
    /// `(1-based line, message)` for what systemd skips with a log line: a name without
    /// `=`, an invalid variable name, an unterminated quote (its value is still kept).
    pub warnings: Vec<(u32, String)>,
}

/// Parses an environment file as systemd does (its `env-file.c` state machine, rewritten):
/// - `NAME=VALUE` assignments; whitespace around the name and before the value is dropped;
///   `#` or `;` as the first non-blank character of a line starts a comment;
/// - an unquoted value keeps its inner whitespace, loses its trailing whitespace, and a
///   backslash keeps the next character literally (backslash-newline joins lines);
/// - `'...'` keeps everything verbatim up to the next `'`, newlines included;
/// - `"..."` likewise, except that `\"`, `\\`, `` \` `` and `\$` lose their backslash,
///   backslash-newline vanishes, and any other backslash stays;
/// - after a closing quote the value goes on (`A="x"y` is `xy`), again as in systemd;
/// - `export NAME=...` is not special: `export NAME` is an invalid name, so the line is
///   skipped (reported in [`EnvFile::warnings`]), as systemd skips it.
///
/// Never fails: systemd starts the service with what it could read, and so do we; the
/// loader turns [`EnvFile::ignored`] into warnings.
pub fn parse_env_file(text: &str) -> EnvFile {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum State {
        PreKey,
        Key,
        PreValue,
        Value,
        ValueEscape,
        Single,
        Double,
        DoubleEscape,
        Comment,
        CommentEscape,
    }
    let newline = |c: char| c == '\n' || c == '\r';
    let blank = |c: char| c == ' ' || c == '\t' || newline(c);
    let mut out = EnvFile::default();
    let mut state = State::PreKey;
    let (mut key, mut value) = (Trimmable::default(), Trimmable::default());
    let (mut line, mut key_line, mut quote_line) = (1u32, 1u32, 1u32);
    for c in text.chars() {
        state = match state {
            State::PreKey if c == '#' || c == ';' => State::Comment,
            State::PreKey if blank(c) => State::PreKey,
            State::PreKey => {
                key = Trimmable::default();
                key.keep(c);
                key_line = line;
                State::Key
            }
            State::Key if newline(c) => {
                out.warnings.push((key_line, no_equals(&key.text)));
                State::PreKey
            }
            State::Key if c == '=' => {
                key.trim();
                value = Trimmable::default();
                State::PreValue
            }
            State::Key => {
                key.push(c, blank(c));
                State::Key
            }
            State::PreValue if newline(c) => {
                out.assign(key.take(), value.take(), key_line);
                State::PreKey
            }
            State::PreValue if c == '\'' || c == '"' => {
                quote_line = line;
                if c == '"' {
                    State::Double
                } else {
                    State::Single
                }
            }
            State::PreValue if c == '\\' => State::ValueEscape,
            State::PreValue if blank(c) => State::PreValue,
            State::PreValue => {
                value.keep(c);
                State::Value
            }
            State::Value if newline(c) => {
                value.trim();
                out.assign(key.take(), value.take(), key_line);
                State::PreKey
            }
            State::Value if c == '\\' => {
                // What comes before an escape is kept, blank or not (even a continuation).
                value.blank_from = None;
                State::ValueEscape
            }
            State::Value => {
                value.push(c, blank(c));
                State::Value
            }
            State::ValueEscape => {
                if !newline(c) {
                    value.keep(c);
                }
                State::Value
            }
            State::Single if c == '\'' => State::PreValue,
            State::Double if c == '"' => State::PreValue,
            State::Double if c == '\\' => State::DoubleEscape,
            State::Single | State::Double => {
                value.keep(c);
                state
            }
            State::DoubleEscape => {
                if matches!(c, '"' | '\\' | '`' | '$') {
                    value.keep(c);
                } else if c != '\n' {
                    value.keep('\\');
                    value.keep(c);
                }
                State::Double
            }
            State::Comment if c == '\\' => State::CommentEscape,
            State::Comment if newline(c) => State::PreKey,
            State::Comment => State::Comment,
            // systemd >= 254: an escaped newline does not continue a comment.
            State::CommentEscape if newline(c) => State::PreKey,
            State::CommentEscape => State::Comment,
        };
        if c == '\n' {
            line += 1;
        }
    }
    match state {
        State::Value | State::PreValue | State::ValueEscape => {
            if state == State::Value {
                value.trim();
            }
            out.assign(key.take(), value.take(), key_line);
        }
        State::Single | State::Double | State::DoubleEscape => {
            out.warnings.push((
                quote_line,
                "unterminated quote: the value runs to the end of the file".to_string(),
            ));
            out.assign(key.take(), value.take(), key_line);
        }
        State::Key => out.warnings.push((key_line, no_equals(&key.text))),
        State::PreKey | State::Comment | State::CommentEscape => {}
    }
    out
}

impl EnvFile {
    /// Adds `name=value` if `name` is a valid variable name; else says the line is skipped.
    fn assign(&mut self, name: String, value: String, line: u32) {
        if env_name_is_valid(&name) {
            self.vars.push((name, value));
        } else {
            let msg = format!("invalid variable name {name:?}, line ignored");
            self.warnings.push((line, msg));
        }
    }
}

fn no_equals(key: &str) -> String {
    format!(
        "expected NAME=value, found {:?}, line ignored",
        key.trim_end()
    )
}

/// A key or value being read: systemd drops the trailing blanks of a key and of an unquoted
/// value, never a quoted or escaped character.
#[derive(Default)]
struct Trimmable {
    text: String,
    /// Where the current run of trailing blanks starts.
    blank_from: Option<usize>,
}

impl Trimmable {
    fn push(&mut self, c: char, blank: bool) {
        if !blank {
            self.blank_from = None;
        } else if self.blank_from.is_none() {
            self.blank_from = Some(self.text.len());
        }
        self.text.push(c);
    }

    /// A character that stays even if blank (quoted, escaped).
    fn keep(&mut self, c: char) {
        self.blank_from = None;
        self.text.push(c);
    }

    fn trim(&mut self) {
        if let Some(at) = self.blank_from.take() {
            self.text.truncate(at);
        }
    }

    fn take(&mut self) -> String {
        self.blank_from = None;
        std::mem::take(&mut self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(s: &str) -> Vec<(String, String)> {
        match parse_environment(s, &mut |w: &str| Ok(w.to_string())) {
            Ok(v) => v,
            Err(e) => panic!("{s}: {e:?}"),
        }
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn quoted_assignments() {
        assert_eq!(
            env(r#""CONFIG=/etc/x.cfg" "EXTRA=-S /run/x.sock" A=1 B="two words" C="#),
            pairs(&[
                ("CONFIG", "/etc/x.cfg"),
                ("EXTRA", "-S /run/x.sock"),
                ("A", "1"),
                ("B", "two words"),
                ("C", "")
            ])
        );
        assert_eq!(env(r"X=a\x20b"), pairs(&[("X", "a b")]));
    }

    #[test]
    fn invalid_assignments_are_errors() {
        let spec = &mut |w: &str| Ok(w.to_string());
        assert!(parse_environment("NOEQUALS", spec).is_err());
        assert!(parse_environment("1X=y", spec).is_err());
        assert!(parse_environment("\"A=unterminated", spec).is_err());
    }

    #[test]
    fn env_file_lines() {
        let text = "# comment\n; also\n\nA=1\n  B = two words  \nC=\"quoted # not comment\"\nD='single $x'\nE=cont\\\ninued\nF=trail   \nG=\"esc \\\" \\$ \\n\"\nH=\nI=a\\ \nJ='multi\nline'\nK=\"x\"y\n";
        let v = parse_env_file(text);
        assert_eq!(
            v.vars,
            pairs(&[
                ("A", "1"),
                ("B", "two words"),
                ("C", "quoted # not comment"),
                ("D", "single $x"),
                ("E", "continued"),
                ("F", "trail"),
                ("G", "esc \" $ \\n"),
                ("H", ""),
                ("I", "a "),
                ("J", "multi\nline"),
                ("K", "xy"),
            ])
        );
        assert!(v.warnings.is_empty(), "{:?}", v.warnings);
    }

    #[test]
    fn blanks_before_a_continuation_are_kept() {
        let v = parse_env_file("A=x \\\ny  \n");
        assert_eq!(v.vars, pairs(&[("A", "x y")]));
    }

    #[test]
    fn env_file_crlf_and_no_final_newline() {
        let v = parse_env_file("A=1\r\nB=2");
        assert_eq!(v.vars, pairs(&[("A", "1"), ("B", "2")]));
    }

    #[test]
    fn export_is_not_special_and_bad_lines_are_skipped_with_their_line() {
        let v = parse_env_file("A=1\nnot an assignment\nexport B=2\n9A=x\nC=3\nD=\"open\n");
        assert_eq!(v.vars, pairs(&[("A", "1"), ("C", "3"), ("D", "open\n")]));
        let lines: Vec<u32> = v.warnings.iter().map(|w| w.0).collect();
        assert_eq!(lines, vec![2, 3, 4, 6], "{:?}", v.warnings);
        assert!(v.warnings[1].1.contains("export B"), "{:?}", v.warnings);
    }

    #[test]
    fn escaped_newline_ends_a_comment() {
        let v = parse_env_file("# note \\\nA=1\n");
        assert_eq!(v.vars, pairs(&[("A", "1")]));
    }
}
