//! `Environment=` assignments and `EnvironmentFile=` contents (systemd.exec(5)).
//!
//! `Environment="A=1" "B=two words" C=3`: words with systemd's quoting and C escapes
//! ([`super::exec::split_words`]), each `NAME=value`. An `EnvironmentFile=` holds one
//! `NAME=value` per line; `#` and `;` start comments; values may be single- or double-quoted;
//! a trailing backslash continues the line; `export ` before a name is tolerated.

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

/// Parses an environment file. Errors carry the 1-based line number.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, (u32, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((idx, line)) = lines.next() {
        let lineno = idx as u32 + 1;
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        let t = t.strip_prefix("export ").map(str::trim_start).unwrap_or(t);
        let Some((name, raw)) = t.split_once('=') else {
            return Err((
                lineno,
                format!("expected NAME=value, found {:?}", t.trim_end()),
            ));
        };
        let name = name.trim_end();
        if !env_name_is_valid(name) {
            return Err((lineno, format!("invalid variable name {name:?}")));
        }
        let mut raw = raw.trim_start().to_string();
        // Continuation: an unquoted trailing backslash joins the next line.
        while raw.ends_with('\\') && !raw.ends_with("\\\\") {
            raw.pop();
            match lines.next() {
                Some((_, next)) => raw.push_str(next),
                None => break,
            }
        }
        let value = unquote_env_value(&raw).map_err(|m| (lineno, format!("{name}: {m}")))?;
        out.push((name.to_string(), value));
    }
    Ok(out)
}

fn unquote_env_value(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    let mut trailing_ws_start: Option<usize> = None;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => out.push(ch),
                        None => return Err("unterminated single quote".into()),
                    }
                }
                trailing_ws_start = None;
            }
            '"' => {
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\' | '`' | '$')) => out.push(e),
                            Some('\n') => {}
                            Some(other) => {
                                out.push('\\');
                                out.push(other);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(ch) => out.push(ch),
                        None => return Err("unterminated double quote".into()),
                    }
                }
                trailing_ws_start = None;
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
                trailing_ws_start = None;
            }
            c if c.is_whitespace() => {
                if trailing_ws_start.is_none() {
                    trailing_ws_start = Some(out.len());
                }
                out.push(c);
            }
            c => {
                out.push(c);
                trailing_ws_start = None;
            }
        }
    }
    if let Some(p) = trailing_ws_start {
        out.truncate(p);
    }
    Ok(out)
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
        let text = "# comment\n; also\n\nA=1\nexport B = two\nC=\"quoted # not comment\"\nD='single $x'\nE=cont\\\ninued\nF=trail   \nG=\"esc \\\" \\$\"\n";
        let v = parse_env_file(text).unwrap_or_default();
        assert_eq!(
            v,
            pairs(&[
                ("A", "1"),
                ("B", "two"),
                ("C", "quoted # not comment"),
                ("D", "single $x"),
                ("E", "continued"),
                ("F", "trail"),
                ("G", "esc \" $"),
            ])
        );
    }

    #[test]
    fn env_file_errors_carry_the_line() {
        assert_eq!(
            parse_env_file("A=1\nnot an assignment\n")
                .err()
                .map(|e| e.0),
            Some(2)
        );
        assert_eq!(parse_env_file("A=\"open\n").err().map(|e| e.0), Some(1));
        assert_eq!(parse_env_file("9A=x\n").err().map(|e| e.0), Some(1));
    }
}
