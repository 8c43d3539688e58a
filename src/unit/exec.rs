//! `Exec*=` command lines (systemd.service(5), "Command lines"), written by hand because the
//! rules are systemd's, not a shell's:
//!
//! - prefixes `-` `@` `:` `+` `!` `!!` before the executable, each at most once;
//! - words split on whitespace; double and single quotes group words (anywhere in a word);
//!   C escapes (`\n \t \\ \" \' \s \xNN \NNN \uNNNN \UNNNNNNNN`) in and outside quotes; an
//!   unknown escape or an unterminated quote is an error;
//! - a lone `;` separates several commands on one line, `\;` is a literal `;` argument;
//! - `$NAME` as a whole word expands to the variable split at whitespace (zero or more
//!   words), `${NAME}` expands in place to exactly its value, `$$` is a literal `$`; the
//!   executable path itself is never expanded.
//!
//! systemd expands variables at exec time with the service's full environment. gitproc does
//! it at load time from `Environment=` and `EnvironmentFile=` (later wins, unknown expands to
//! empty, nothing at all with the `:` prefix) so the effective command is visible in the model
//! and in the content hash. Variables only the manager knows when it spawns ([`RUNTIME_VARS`],
//! e.g. `$MAINPID` in `ExecReload=/bin/kill -HUP $MAINPID`) and `PassEnvironment=` names are
//! left verbatim unless the unit sets them, listed in [`ExecCommand::runtime_vars`]; the
//! runtime substitutes them with [`expand_runtime`]. `UnsetEnvironment=` names expand to empty.
//!
//! A little over 600 lines: the quoting rules and their tests read best side by side.

use super::model::{ExecCommand, ExecFlags};

/// Variables the service manager sets at spawn time; kept for [`expand_runtime`].
pub const RUNTIME_VARS: &[&str] = &[
    "CACHE_DIRECTORY",
    "CONFIGURATION_DIRECTORY",
    "CREDENTIALS_DIRECTORY",
    "EXIT_CODE",
    "EXIT_STATUS",
    "HOME",
    "INVOCATION_ID",
    "LANG",
    "LOGNAME",
    "LOGS_DIRECTORY",
    "MAINPID",
    "MANAGER_PID",
    "NOTIFY_SOCKET",
    "PATH",
    "RUNTIME_DIRECTORY",
    "SERVICE_RESULT",
    "SHELL",
    "STATE_DIRECTORY",
    "USER",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
];

/// One word of a setting value after quote removal and unescaping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    /// Character offset of the word's first character in the value (for columns).
    pub offset: usize,
    /// The raw word was exactly `;` (a command separator in `Exec*=`).
    pub separator: bool,
}

/// A problem at a character offset of the value.
pub type Located = (usize, String);

fn hex_digit(c: u8) -> Option<u32> {
    (c as char).to_digit(16)
}

/// Decodes one C escape starting after the backslash at `bytes[i]`; returns bytes consumed.
fn unescape_one(bytes: &[u8], i: usize, out: &mut Vec<u8>) -> Result<usize, String> {
    let Some(&c) = bytes.get(i) else {
        return Err("backslash at the end of the value".into());
    };
    let simple = match c {
        b'a' => Some(7u8),
        b'b' => Some(8),
        b'f' => Some(12),
        b'n' => Some(b'\n'),
        b'r' => Some(b'\r'),
        b't' => Some(b'\t'),
        b'v' => Some(11),
        b'\\' => Some(b'\\'),
        b'"' => Some(b'"'),
        b'\'' => Some(b'\''),
        b's' => Some(b' '),
        _ => None,
    };
    if let Some(b) = simple {
        out.push(b);
        return Ok(1);
    }
    match c {
        b'x' => {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&b| hex_digit(b)),
                bytes.get(i + 2).and_then(|&b| hex_digit(b)),
            ) else {
                return Err("\\x must be followed by two hex digits".into());
            };
            let b = (h * 16 + l) as u8;
            if b == 0 {
                return Err("\\x00 (NUL) is not allowed".into());
            }
            out.push(b);
            Ok(3)
        }
        b'u' | b'U' => {
            let n = if c == b'u' { 4 } else { 8 };
            let mut v: u32 = 0;
            for k in 1..=n {
                let Some(d) = bytes.get(i + k).and_then(|&b| hex_digit(b)) else {
                    return Err(format!(
                        "\\{} must be followed by {n} hex digits",
                        c as char
                    ));
                };
                v = v.wrapping_mul(16).wrapping_add(d);
            }
            match char::from_u32(v).filter(|&ch| ch != '\0') {
                Some(ch) => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    Ok(n + 1)
                }
                None => Err(format!("\\{} escape is not a valid character", c as char)),
            }
        }
        b'0'..=b'7' => {
            let digits: Option<Vec<u32>> = (0..3)
                .map(|k| bytes.get(i + k).and_then(|&b| (b as char).to_digit(8)))
                .collect();
            let Some(d) = digits else {
                return Err("octal escape must have three digits, e.g. \\040".into());
            };
            let v = d[0] * 64 + d[1] * 8 + d[2];
            if v == 0 || v > 255 {
                return Err("octal escape out of range (\\001 to \\377)".into());
            }
            out.push(v as u8);
            Ok(3)
        }
        other => Err(format!(
            "unknown escape \\{}: use \\\\ for a backslash",
            other as char
        )),
    }
}

/// Splits a value into words with systemd's quoting and C escapes (extract_first_word with
/// unquoting and unescaping).
pub fn split_words(value: &str) -> Result<Vec<Word>, Located> {
    let bytes = value.as_bytes();
    let ascii = value.is_ascii();
    let char_off = |b: usize| -> usize { if ascii { b } else { value[..b].chars().count() } };
    let mut words = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let start = i;
        let mut end = i;
        while end < bytes.len() && !bytes[end].is_ascii_whitespace() {
            end += 1;
        }
        let raw = &value[start..end];
        if raw == ";" || raw == "\\;" {
            words.push(Word {
                text: ";".into(),
                offset: char_off(start),
                separator: raw == ";",
            });
            i = end;
            continue;
        }
        let mut out: Vec<u8> = Vec::with_capacity(end - start);
        let mut quote: Option<u8> = None;
        let mut quote_start = start;
        while i < bytes.len() {
            let c = bytes[i];
            match quote {
                None if c.is_ascii_whitespace() => break,
                None if c == b'"' || c == b'\'' => {
                    quote = Some(c);
                    quote_start = i;
                    i += 1;
                }
                Some(q) if c == q => {
                    quote = None;
                    i += 1;
                }
                _ if c == b'\\' => {
                    let used =
                        unescape_one(bytes, i + 1, &mut out).map_err(|m| (char_off(i), m))?;
                    i += 1 + used;
                }
                _ => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        if quote.is_some() {
            return Err((char_off(quote_start), "unterminated quote".into()));
        }
        let text = String::from_utf8(out)
            .map_err(|_| (char_off(start), "escapes produce invalid UTF-8".to_string()))?;
        words.push(Word {
            text,
            offset: char_off(start),
            separator: false,
        });
    }
    Ok(words)
}

/// True for a valid environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn env_name_is_valid(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What a variable expands to at load time.
enum Lookup<'a> {
    Value(&'a str),
    /// Unknown now but provided at spawn time: keep the reference verbatim.
    Keep,
    Empty,
}

/// How variables are resolved: the unit's own environment, and which unknown names are
/// left for the runtime (in addition to [`RUNTIME_VARS`]).
struct Resolver<'r, 'a> {
    env: &'r dyn Fn(&str) -> Option<&'a str>,
    keep: &'r dyn Fn(&str) -> bool,
    /// Names kept verbatim so far.
    kept: Vec<String>,
    runtime: bool,
}

impl<'a> Resolver<'_, 'a> {
    fn lookup(&mut self, name: &str) -> Lookup<'a> {
        match (self.env)(name) {
            Some(v) => Lookup::Value(v),
            None if self.runtime && (RUNTIME_VARS.contains(&name) || (self.keep)(name)) => {
                if !self.kept.iter().any(|k| k == name) {
                    self.kept.push(name.to_string());
                }
                Lookup::Keep
            }
            None => Lookup::Empty,
        }
    }
}

/// Expands one argument: a whole-word `$NAME` becomes zero or more words, `${NAME}` expands in
/// place, `$$` is `$`.
fn expand_word(word: &str, r: &mut Resolver<'_, '_>, out: &mut Vec<String>) {
    if !word.contains('$') {
        out.push(word.to_string());
        return;
    }
    if let Some(name) = word.strip_prefix('$')
        && env_name_is_valid(name)
    {
        match r.lookup(name) {
            Lookup::Value(v) => out.extend(v.split_ascii_whitespace().map(str::to_string)),
            Lookup::Keep => out.push(word.to_string()),
            Lookup::Empty => {}
        }
        return;
    }
    let mut s = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(pos) = rest.find('$') {
        s.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            s.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{')
            && let Some(close) = tail.find('}')
            && env_name_is_valid(&tail[..close])
        {
            match r.lookup(&tail[..close]) {
                Lookup::Value(v) => s.push_str(v),
                Lookup::Keep => s.push_str(&rest[pos..pos + close + 3]),
                Lookup::Empty => {}
            }
            rest = &tail[close + 1..];
        } else {
            s.push('$');
            rest = after;
        }
    }
    s.push_str(rest);
    out.push(s);
}

/// For the runtime, at spawn: substitutes the variables the parser left verbatim
/// ([`ExecCommand::runtime_vars`]: `$MAINPID`, `${EXIT_STATUS}`, `PassEnvironment=` names, ...)
/// with their values; those `env` does not know expand to empty. The executable path and an
/// argv[0] that is the path are never touched.
pub fn expand_runtime(cmd: &ExecCommand, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    if cmd.runtime_vars.is_empty() {
        return cmd.argv.clone();
    }
    let values: Vec<(String, String)> = cmd
        .runtime_vars
        .iter()
        .filter_map(|n| env(n).map(|v| (n.clone(), v)))
        .collect();
    let lookup = |n: &str| values.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let only_kept = |n: &str| cmd.runtime_vars.iter().any(|k| k == n);
    let mut out = Vec::with_capacity(cmd.argv.len());
    for (i, a) in cmd.argv.iter().enumerate() {
        if (i == 0 && !cmd.flags.custom_argv0) || !a.contains('$') {
            out.push(a.clone());
            continue;
        }
        // Only the kept names are substituted: any other `$` in argv is already literal.
        let mut words = Vec::new();
        let mut r = Resolver {
            env: &lookup,
            keep: &|_| false,
            kept: Vec::new(),
            runtime: false,
        };
        expand_kept_only(a, &mut r, &only_kept, &mut words);
        out.extend(words);
    }
    out
}

/// Like [`expand_word`] but leaves every reference whose name is not in `only` untouched.
fn expand_kept_only(
    word: &str,
    r: &mut Resolver<'_, '_>,
    only: &dyn Fn(&str) -> bool,
    out: &mut Vec<String>,
) {
    if let Some(name) = word.strip_prefix('$')
        && env_name_is_valid(name)
    {
        if only(name) {
            expand_word(word, r, out);
        } else {
            out.push(word.to_string());
        }
        return;
    }
    let mut s = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(pos) = rest.find("${") {
        s.push_str(&rest[..pos]);
        let tail = &rest[pos + 2..];
        match tail.find('}') {
            Some(close) if only(&tail[..close]) => {
                if let Lookup::Value(v) = r.lookup(&tail[..close]) {
                    s.push_str(v);
                }
                rest = &tail[close + 1..];
            }
            _ => {
                s.push_str("${");
                rest = tail;
            }
        }
    }
    s.push_str(rest);
    out.push(s);
}

/// Parses an `Exec*=` value into commands. `spec` expands `%` specifiers in a word; `env`
/// looks up a variable from `Environment=`/`EnvironmentFile=`. Errors carry the character
/// offset in the value.
pub fn parse_exec<'e>(
    value: &str,
    origin: &str,
    spec: &mut dyn FnMut(&str) -> Result<String, String>,
    env: &dyn Fn(&str) -> Option<&'e str>,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<ExecCommand>, Located> {
    let words = split_words(value)?;
    let mut commands = Vec::new();
    let mut iter = words.into_iter().peekable();
    while iter.peek().is_some() {
        let Some(first) = iter.next() else { break };
        if first.separator {
            continue;
        }
        let mut flags = ExecFlags::default();
        let mut path = first.text.as_str();
        loop {
            let conflict = |f: &ExecFlags| f.full_privileges || f.no_setuid || f.ambient_fallback;
            let (flag, taken): (&mut bool, usize) = if let Some(r) = path.strip_prefix("!!") {
                let _ = r;
                if conflict(&flags) {
                    return Err((
                        first.offset,
                        "conflicting prefixes: '+', '!' and '!!' exclude each other".into(),
                    ));
                }
                (&mut flags.ambient_fallback, 2)
            } else {
                match path.as_bytes().first() {
                    Some(b'-') => (&mut flags.ignore_failure, 1),
                    Some(b'@') => (&mut flags.custom_argv0, 1),
                    Some(b':') => (&mut flags.no_env_expansion, 1),
                    Some(b'+') | Some(b'!') => {
                        if conflict(&flags) {
                            return Err((
                                first.offset,
                                "conflicting prefixes: '+', '!' and '!!' exclude each other".into(),
                            ));
                        }
                        if path.starts_with('+') {
                            (&mut flags.full_privileges, 1)
                        } else {
                            (&mut flags.no_setuid, 1)
                        }
                    }
                    _ => break,
                }
            };
            if *flag {
                return Err((
                    first.offset,
                    format!("prefix {:?} given twice", &path[..taken]),
                ));
            }
            *flag = true;
            path = &path[taken..];
        }
        if flags.ambient_fallback {
            // `!!` means `!` on systems without ambient capabilities; gitproc treats it as `!`.
            flags.no_setuid = true;
        }
        if path.is_empty() {
            return Err((
                first.offset,
                "missing executable path after the prefixes (no space is allowed between prefix and path)".into(),
            ));
        }
        let path = spec(path).map_err(|m| (first.offset, m))?;
        if path.contains('/') && !path.starts_with('/') {
            return Err((
                first.offset,
                format!(
                    "executable path {path:?} must be absolute or a plain file name searched in PATH"
                ),
            ));
        }
        let env_on = !flags.no_env_expansion;
        let mut resolver = Resolver {
            env,
            keep,
            kept: Vec::new(),
            runtime: true,
        };
        let mut argv: Vec<String> = Vec::new();
        let mut expect_argv0 = flags.custom_argv0;
        if !expect_argv0 {
            argv.push(path.clone());
        }
        for w in iter.by_ref() {
            if w.separator {
                break;
            }
            let text = spec(&w.text).map_err(|m| (w.offset, m))?;
            if env_on {
                expand_word(&text, &mut resolver, &mut argv);
            } else {
                argv.push(text);
            }
            expect_argv0 = false;
        }
        if expect_argv0 || argv.is_empty() {
            return Err((
                first.offset,
                "'@' prefix needs argv[0] after the executable path".into(),
            ));
        }
        commands.push(ExecCommand {
            flags,
            path,
            argv,
            origin: origin.to_string(),
            runtime_vars: resolver.kept,
        });
    }
    Ok(commands)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        match split_words(s) {
            Ok(w) => w.into_iter().map(|w| w.text).collect(),
            Err(e) => panic!("{s}: {e:?}"),
        }
    }

    fn env_of<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |n| vars.iter().rev().find(|(k, _)| *k == n).map(|(_, v)| *v)
    }

    fn exec(s: &str, vars: &[(&str, &str)]) -> Result<Vec<ExecCommand>, Located> {
        let env = env_of(vars);
        parse_exec(s, "t:1", &mut |w: &str| Ok(w.to_string()), &env, &|n| {
            n == "PASSED"
        })
    }

    fn argv(s: &str, vars: &[(&str, &str)]) -> Vec<String> {
        match exec(s, vars) {
            Ok(c) => c.into_iter().next().map(|c| c.argv).unwrap_or_default(),
            Err(e) => panic!("{s}: {e:?}"),
        }
    }

    #[test]
    fn quoting_double_single_and_mid_word() {
        assert_eq!(
            words(r#"a "b c" 'd e' f"g h"i"#),
            vec!["a", "b c", "d e", "fg hi"]
        );
        assert_eq!(words(r#"'it"s' "it's""#), vec!["it\"s", "it's"]);
        assert_eq!(words(r#""" x"#), vec!["", "x"]);
    }

    #[test]
    fn c_escapes() {
        assert_eq!(
            words(r#"a\tb \x41 \101 \u00e9 \s \\ \"q\""#),
            vec!["a\tb", "A", "A", "é", " ", "\\", "\"q\""]
        );
        assert_eq!(words(r#""a\nb""#), vec!["a\nb"]);
        assert!(split_words(r"\q").is_err());
        assert!(split_words(r"\x4").is_err());
        assert!(split_words(r"\x00").is_err());
        assert!(split_words("trailing\\").is_err());
    }

    #[test]
    fn unterminated_quote_is_an_error_at_the_quote() {
        assert_eq!(split_words("ab \"cd").err().map(|e| e.0), Some(3));
    }

    #[test]
    fn prefixes() {
        let c = exec("-@:+/bin/x argv0 a", &[]).unwrap_or_default();
        let f = c[0].flags;
        assert!(f.ignore_failure && f.custom_argv0 && f.no_env_expansion && f.full_privileges);
        assert_eq!(c[0].path, "/bin/x");
        assert_eq!(c[0].argv, vec!["argv0", "a"]);
        let c = exec("!!/bin/x", &[]).unwrap_or_default();
        assert!(c[0].flags.ambient_fallback && c[0].flags.no_setuid);
        let c = exec("!/bin/x", &[]).unwrap_or_default();
        assert!(c[0].flags.no_setuid && !c[0].flags.ambient_fallback);
        assert!(exec("+!/bin/x", &[]).is_err());
        assert!(exec("--/bin/x", &[]).is_err());
        assert!(exec("- /bin/x", &[]).is_err());
        assert!(exec("@/bin/x", &[]).is_err());
        assert!(exec("bin/x", &[]).is_err());
        assert_eq!(
            exec("true", &[]).map(|c| c[0].path.clone()).ok().as_deref(),
            Some("true")
        );
    }

    #[test]
    fn semicolon_separates_and_escaped_semicolon_is_literal() {
        let c = exec("/bin/a 1 ; /bin/b \\; 2", &[]).unwrap_or_default();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].argv, vec!["/bin/a", "1"]);
        assert_eq!(c[1].argv, vec!["/bin/b", ";", "2"]);
    }

    #[test]
    fn variable_expansion() {
        let vars = [("OPTS", "-a  -b"), ("ONE", "x y"), ("D", "$")];
        assert_eq!(argv("/bin/x $OPTS", &vars), vec!["/bin/x", "-a", "-b"]);
        assert_eq!(argv("/bin/x ${ONE}", &vars), vec!["/bin/x", "x y"]);
        assert_eq!(argv("/bin/x a${ONE}b", &vars), vec!["/bin/x", "ax yb"]);
        assert_eq!(argv("/bin/x $UNKNOWN z", &vars), vec!["/bin/x", "z"]);
        assert_eq!(argv("/bin/x ${UNKNOWN}z", &vars), vec!["/bin/x", "z"]);
        assert_eq!(
            argv("/bin/x $$HOME a$b", &vars),
            vec!["/bin/x", "$HOME", "a$b"]
        );
        assert_eq!(argv("/bin/x \"$OPTS\"", &vars), vec!["/bin/x", "-a", "-b"]);
        assert_eq!(argv(":/bin/x $OPTS", &vars), vec!["/bin/x", "$OPTS"]);
        assert_eq!(argv("/bin/$ONE", &vars), vec!["/bin/$ONE"]);
    }

    #[test]
    fn runtime_variables_are_kept_for_the_runtime() {
        let cmds = exec(
            "/bin/kill -HUP $MAINPID ${EXIT_CODE} $$MAINPID x${PASSED}y $$",
            &[],
        );
        let c = cmds.unwrap_or_default().remove(0);
        assert_eq!(
            c.argv,
            vec![
                "/bin/kill",
                "-HUP",
                "$MAINPID",
                "${EXIT_CODE}",
                "$MAINPID",
                "x${PASSED}y",
                "$"
            ]
        );
        assert_eq!(c.runtime_vars, vec!["MAINPID", "EXIT_CODE", "PASSED"]);
        let env = |n: &str| match n {
            "MAINPID" => Some("42".to_string()),
            "PASSED" => Some("p q".to_string()),
            _ => None,
        };
        // `$$MAINPID` became a literal `$MAINPID` word indistinguishable from a kept one: the
        // runtime substitutes both (systemd would keep the literal; a documented corner).
        assert_eq!(
            expand_runtime(&c, &env),
            vec!["/bin/kill", "-HUP", "42", "", "42", "xp qy", "$"]
        );
        // A unit's own value wins.
        assert_eq!(
            argv("/bin/x $MAINPID", &[("MAINPID", "7")]),
            vec!["/bin/x", "7"]
        );
    }

    #[test]
    fn env_names() {
        assert!(env_name_is_valid("A_1"));
        assert!(env_name_is_valid("_x"));
        assert!(!env_name_is_valid("1A"));
        assert!(!env_name_is_valid(""));
        assert!(!env_name_is_valid("A-B"));
    }
}
