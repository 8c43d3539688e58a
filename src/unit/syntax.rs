//! The lexer of systemd's unit file syntax (systemd.syntax(7)): sections, comments,
//! backslash continuation, `Key=Value` entries with their positions.
//!
//! It knows nothing about keys' meanings; [`super::load`] gives them one. It borrows from the
//! input and only allocates for continued lines, because it runs on every unit of every commit.

use std::borrow::Cow;

use super::diagnostic::Diagnostic;

/// One `Key=Value` assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Section name without brackets, e.g. `Service`.
    pub section: &'a str,
    pub key: &'a str,
    /// Value with surrounding whitespace removed; continued lines joined with a space.
    pub value: Cow<'a, str>,
    /// Line (1-based) of the key.
    pub line: u32,
    /// Column (1-based, in characters) of the key.
    pub column: u32,
    /// Column of the first character of the value (on `line`).
    pub value_column: u32,
}

/// A section header as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section<'a> {
    pub name: &'a str,
    pub line: u32,
    pub column: u32,
}

/// The lexed file: headers and entries in file order, and syntax diagnostics (all errors).
#[derive(Debug, Default)]
pub struct Parsed<'a> {
    pub sections: Vec<Section<'a>>,
    pub entries: Vec<Entry<'a>>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Validates UTF-8; an invalid file is an error at the first bad byte's line and column.
pub fn decode<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str, Diagnostic> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.strip_prefix('\u{feff}').unwrap_or(s)),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            // The prefix is valid UTF-8 by construction.
            let good = std::str::from_utf8(good).unwrap_or("");
            let line = good.matches('\n').count() as u32 + 1;
            let last = good.rsplit('\n').next().unwrap_or("");
            let column = last.chars().count() as u32 + 1;
            Err(Diagnostic::error(
                file,
                line,
                column,
                "invalid UTF-8 (unit files must be UTF-8 encoded)",
            ))
        }
    }
}

fn column_of(line: &str, byte_offset: usize) -> u32 {
    let prefix = &line[..byte_offset.min(line.len())];
    if prefix.is_ascii() {
        prefix.len() as u32 + 1
    } else {
        prefix.chars().count() as u32 + 1
    }
}

fn is_comment(trimmed: &str) -> bool {
    trimmed.starts_with('#') || trimmed.starts_with(';')
}

/// Lexes `text` (already known to be UTF-8). `file` is only used in diagnostics.
pub fn parse<'a>(file: &str, text: &'a str) -> Parsed<'a> {
    let mut out = Parsed::default();
    let mut section: Option<&'a str> = None;
    let mut lines = text.split('\n').enumerate().peekable();
    while let Some((idx, raw)) = lines.next() {
        let lineno = idx as u32 + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || is_comment(trimmed) {
            continue;
        }
        let indent = raw.len() - trimmed.len();
        let trimmed = trimmed.trim_end();
        if trimmed.starts_with('[') {
            if !trimmed.ends_with(']') || trimmed.len() < 3 {
                out.diagnostics.push(Diagnostic::error(
                    file,
                    lineno,
                    column_of(raw, indent),
                    format!("invalid section header {trimmed:?}: expected [Name]"),
                ));
                section = None;
                continue;
            }
            let name = &trimmed[1..trimmed.len() - 1];
            if name.contains(['[', ']']) || name.trim() != name {
                out.diagnostics.push(Diagnostic::error(
                    file,
                    lineno,
                    column_of(raw, indent),
                    format!("invalid section header {trimmed:?}"),
                ));
                section = None;
                continue;
            }
            out.sections.push(Section {
                name,
                line: lineno,
                column: column_of(raw, indent),
            });
            section = Some(name);
            continue;
        }
        // An assignment, possibly continued on the next lines.
        let Some(eq) = trimmed.find('=') else {
            out.diagnostics.push(Diagnostic::error(
                file,
                lineno,
                column_of(raw, indent),
                format!("missing '=' in {trimmed:?}: expected Key=Value"),
            ));
            skip_continuation(trimmed, &mut lines);
            continue;
        };
        let key = trimmed[..eq].trim_end();
        let column = column_of(raw, indent);
        if key.is_empty() {
            out.diagnostics.push(Diagnostic::error(
                file,
                lineno,
                column,
                "assignment without a key name",
            ));
            skip_continuation(trimmed, &mut lines);
            continue;
        }
        let Some(sec) = section else {
            out.diagnostics.push(Diagnostic::error(
                file,
                lineno,
                column,
                format!(
                    "assignment {key}= outside of any section: put it after a [Section] header"
                ),
            ));
            skip_continuation(trimmed, &mut lines);
            continue;
        };
        let after_eq = &trimmed[eq + 1..];
        let value_start = after_eq.len() - after_eq.trim_start().len();
        let value_column = column_of(raw, indent + eq + 1 + value_start);
        let first = after_eq.trim_start();
        let value = if let Some(head) = first.strip_suffix('\\') {
            // systemd.syntax: a line ending in a backslash continues on the next line; the
            // backslash becomes a space; comment lines inside the continuation are skipped.
            let mut joined = String::with_capacity(head.len() + 64);
            joined.push_str(head);
            joined.push(' ');
            for (_, next) in lines.by_ref() {
                let next = next.strip_suffix('\r').unwrap_or(next);
                let t = next.trim_start();
                if is_comment(t) {
                    continue;
                }
                let t = t.trim_end();
                if let Some(h) = t.strip_suffix('\\') {
                    joined.push_str(h);
                    joined.push(' ');
                } else {
                    joined.push_str(t);
                    break;
                }
            }
            let trimmed_len = joined.trim_end().len();
            joined.truncate(trimmed_len);
            Cow::Owned(joined)
        } else {
            Cow::Borrowed(first)
        };
        out.entries.push(Entry {
            section: sec,
            key,
            value,
            line: lineno,
            column,
            value_column,
        });
    }
    out
}

fn skip_continuation<'a, I>(line: &str, lines: &mut std::iter::Peekable<I>)
where
    I: Iterator<Item = (usize, &'a str)>,
{
    if !line.ends_with('\\') {
        return;
    }
    for (_, next) in lines.by_ref() {
        let t = next.trim();
        if is_comment(t) {
            continue;
        }
        if !t.ends_with('\\') {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(s: &str) -> Parsed<'_> {
        parse("t.service", s)
    }

    #[test]
    fn sections_entries_and_positions() {
        let p = lex("[Unit]\nDescription = hello world \n\n[Service]\n  ExecStart=/bin/true\n");
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        assert_eq!(p.sections.len(), 2);
        assert_eq!(p.entries[0].section, "Unit");
        assert_eq!(p.entries[0].key, "Description");
        assert_eq!(p.entries[0].value, "hello world");
        assert_eq!((p.entries[0].line, p.entries[0].column), (2, 1));
        assert_eq!(p.entries[0].value_column, 15);
        assert_eq!(p.entries[1].section, "Service");
        assert_eq!((p.entries[1].line, p.entries[1].column), (5, 3));
    }

    #[test]
    fn comments_with_hash_and_semicolon_are_ignored() {
        let p = lex("# c\n; c\n[Unit]\n  # indented\nAfter=a\n");
        assert!(p.diagnostics.is_empty());
        assert_eq!(p.entries.len(), 1);
    }

    #[test]
    fn trailing_hash_is_part_of_the_value() {
        // systemd.syntax: comments only at the start of a line.
        let p = lex("[Unit]\nDescription=a # b\n");
        assert_eq!(p.entries[0].value, "a # b");
    }

    #[test]
    fn backslash_continues_and_becomes_a_space_skipping_comments() {
        let p = lex("[Service]\nExecStart=/bin/echo a \\\n# comment\n   b\\\nc\nUser=x\n");
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        assert_eq!(p.entries[0].value, "/bin/echo a  b c");
        assert_eq!(p.entries[1].key, "User");
        assert_eq!(p.entries[1].line, 6);
    }

    #[test]
    fn crlf_line_endings_are_accepted() {
        let p = lex("[Unit]\r\nAfter=a\r\n");
        assert_eq!(p.entries[0].value, "a");
    }

    #[test]
    fn assignment_outside_section_is_an_error() {
        let p = lex("After=a\n[Unit]\n");
        assert_eq!(p.diagnostics.len(), 1);
        assert_eq!((p.diagnostics[0].line, p.diagnostics[0].column), (1, 1));
        assert!(p.diagnostics[0].message.contains("outside"));
    }

    #[test]
    fn missing_equals_and_bad_header_are_errors() {
        let p = lex("[Unit\nFoo\n[Unit]\n  bar\n=x\n");
        let lines: Vec<u32> = p.diagnostics.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![1, 2, 4, 5]);
        assert_eq!(p.diagnostics[2].column, 3);
    }

    #[test]
    fn invalid_utf8_reports_position() {
        let err = decode("t.service", b"[Unit]\nDescription=ab\xff\n").err();
        let err = err.map(|d| (d.line, d.column));
        assert_eq!(err, Some((2, 15)));
        assert_eq!(
            decode("t", "\u{feff}[Unit]".as_bytes()).ok(),
            Some("[Unit]")
        );
    }

    #[test]
    fn columns_count_characters() {
        let p = lex("[Unit]\nDescription=é x\n  After=a\n");
        assert_eq!(p.entries[0].value_column, 13);
    }
}
