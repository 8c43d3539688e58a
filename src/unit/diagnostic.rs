//! Diagnostics: what the parser says about a unit, each pinned to `file:line:column`.
//!
//! The format follows compilers and systemd-analyze so editors can jump to the spot:
//! `file:line:col: error: message`.

use std::fmt;

/// How bad a diagnostic is. An error rejects the unit (and only that unit); a warning does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One message about one place of one file. Lines and columns start at 1; column counts
/// characters (not bytes) so it matches what an editor shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub severity: Severity,
    pub message: String,
}

impl Diagnostic {
    pub fn error(file: &str, line: u32, column: u32, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.to_string(),
            line,
            column,
            severity: Severity::Error,
            message: message.into(),
        }
    }

    pub fn warning(file: &str, line: u32, column: u32, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.to_string(),
            line,
            column,
            severity: Severity::Warning,
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.severity, self.message
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_file_line_col_severity_message() {
        let d = Diagnostic::error("a.service", 3, 7, "bad");
        assert_eq!(d.to_string(), "a.service:3:7: error: bad");
        let w = Diagnostic::warning("a.service", 1, 1, "hmm");
        assert_eq!(w.to_string(), "a.service:1:1: warning: hmm");
    }

    #[test]
    fn serializes_with_lowercase_severity() {
        let d = Diagnostic::warning("a.service", 2, 1, "x");
        let json = serde_json::to_string(&d).unwrap_or_default();
        assert!(json.contains("\"severity\":\"warning\""), "{json}");
        assert!(json.contains("\"line\":2"), "{json}");
    }
}
