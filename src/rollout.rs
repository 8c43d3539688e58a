//! Staged rollouts declared in the repository: the policy file `gitproc-rollout.toml` at the
//! top of the units directory, and the pure decision of when *this* host applies a commit.
//!
//! There is no coordination server: every host reads the same policy from the same commit,
//! computes its own wave from its host name, and waits that wave's delay after the commit's
//! committer time. The rules, all here so the daemon only carries them out:
//!
//! - **Waves** are tried in order; a host belongs to the first that matches: a host glob
//!   (`hosts`), a share of the fleet (`percent`, by a stable FNV-1a hash of the host name and
//!   the policy's `salt`; the hash picks the same hosts on every machine and every release),
//!   or neither (every host). Percentages are cumulative positions in the hash space, so
//!   `percent = 10` then `percent = 50` is "the first 10 %, then up to half". A host no wave
//!   matches waits the longest delay of all.
//! - **Halt**: `halt = true` in the newest commit's policy holds that commit on every host
//!   that has not applied it: the rollout stops where it is (already-updated hosts keep it).
//! - **Reverts travel fast**: a commit whose units (every file of the units directory but
//!   the policy itself) equal what this host already runs, or ran in its last few applied
//!   commits ([`HISTORY`]), applies at once, even under `halt`: going back to content the
//!   host has run is never held. `immediate = true` applies a commit at once on every host
//!   (a fix that is not a plain revert); `halt` wins over it.
//! - **Clock skew is bounded**: the delay counts from the committer time clamped into
//!   `[first_seen - max_skew_s, first_seen]`, where `first_seen` is when this host first
//!   fetched the commit by its own clock. A committer time in the future (a fast clock
//!   somewhere) counts as "now"; one far in the past (a slow clock, a rewritten date) cannot
//!   skip the waves. So a host applies between `delay - max_skew_s` and `delay` after it
//!   first saw the commit, whatever the clocks say.
//!
//! Times are milliseconds since the Unix epoch, passed in: this module reads no clock.

use std::fmt;

use serde::Deserialize;

use crate::tree::{Entry, FileTree};
use crate::unit::load::hash::{Fnv128, fnv1a_64};

/// The policy file's name, at the top of the units directory.
pub const POLICY_FILE: &str = "gitproc-rollout.toml";

/// How many applied unit sets a host remembers as "ran before" (a commit equal to one of
/// them is a revert and applies at once).
pub const HISTORY: usize = 4;

/// Default of `max_skew_s`: five minutes, above any sane NTP drift, below any wave delay
/// worth having.
pub const DEFAULT_MAX_SKEW_S: f64 = 300.0;

/// Longest delay or skew bound accepted: 30 days (a longer one is a typo).
const MAX_SECONDS: f64 = 30.0 * 86_400.0;

/// Resolution of `percent`: hosts are spread over this many buckets (0.01 %).
const BUCKETS: u64 = 10_000;

/// A parsed, validated `gitproc-rollout.toml`.
#[derive(Debug, Clone)]
pub struct Policy {
    pub halt: bool,
    pub immediate: bool,
    pub max_skew_ms: i64,
    pub salt: String,
    pub waves: Vec<Wave>,
}

/// One wave: who is in it and how long after the commit it applies.
#[derive(Debug, Clone)]
pub struct Wave {
    pub name: String,
    hosts: Option<globset::GlobSet>,
    /// Upper end of the wave's share of the hash space, in buckets (`percent * 100`).
    upto_bucket: Option<u64>,
    pub delay_ms: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    halt: bool,
    #[serde(default)]
    immediate: bool,
    #[serde(default)]
    max_skew_s: Option<f64>,
    #[serde(default)]
    salt: String,
    #[serde(default)]
    wave: Vec<RawWave>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWave {
    name: Option<String>,
    #[serde(default)]
    hosts: Vec<String>,
    percent: Option<f64>,
    #[serde(default)]
    delay_s: f64,
}

/// Parses the policy file's bytes; the error names the file and what is wrong.
pub fn parse(bytes: &[u8]) -> Result<Policy, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| format!("{POLICY_FILE}: not UTF-8"))?;
    let raw: RawPolicy = toml::from_str(text).map_err(|e| format!("{POLICY_FILE}: {e}"))?;
    let max_skew_s = raw.max_skew_s.unwrap_or(DEFAULT_MAX_SKEW_S);
    let max_skew_ms =
        seconds_ms("max_skew_s", max_skew_s).map_err(|e| format!("{POLICY_FILE}: {e}"))?;
    let mut waves = Vec::with_capacity(raw.wave.len());
    for (i, w) in raw.wave.into_iter().enumerate() {
        let name = w.name.unwrap_or_else(|| format!("wave {}", i + 1));
        let at = |what: String| format!("{POLICY_FILE}: wave {name:?}: {what}");
        let hosts = if w.hosts.is_empty() {
            None
        } else {
            let mut set = globset::GlobSetBuilder::new();
            for pattern in &w.hosts {
                let glob = globset::Glob::new(pattern)
                    .map_err(|e| at(format!("host glob {pattern:?}: {e}")))?;
                set.add(glob);
            }
            Some(set.build().map_err(|e| at(format!("host globs: {e}")))?)
        };
        let upto_bucket = match w.percent {
            None => None,
            Some(p) if p.is_finite() && (0.0..=100.0).contains(&p) => {
                Some((p * (BUCKETS as f64) / 100.0).round() as u64)
            }
            Some(p) => return Err(at(format!("percent = {p} is not between 0 and 100"))),
        };
        let delay_ms = seconds_ms("delay_s", w.delay_s).map_err(at)?;
        waves.push(Wave {
            name,
            hosts,
            upto_bucket,
            delay_ms,
        });
    }
    Ok(Policy {
        halt: raw.halt,
        immediate: raw.immediate,
        max_skew_ms,
        salt: raw.salt,
        waves,
    })
}

fn seconds_ms(key: &str, s: f64) -> Result<i64, String> {
    if !s.is_finite() || !(0.0..=MAX_SECONDS).contains(&s) {
        return Err(format!(
            "{key} = {s} is not between 0 and {MAX_SECONDS} seconds"
        ));
    }
    Ok((s * 1000.0).round() as i64)
}

/// The host's position in the hash space, `0..10000`: stable across machines and releases
/// (FNV-1a, the project's one hash), changed for the whole fleet by the policy's `salt`.
pub fn host_bucket(salt: &str, host: &str) -> u64 {
    let mut key = Vec::with_capacity(salt.len() + host.len() + 1);
    key.extend_from_slice(salt.as_bytes());
    key.push(0);
    key.extend_from_slice(host.as_bytes());
    fnv1a_64(&key) % BUCKETS
}

impl Policy {
    /// The wave `host` belongs to: the first that matches, else `None`.
    pub fn wave_of(&self, host: &str) -> Option<&Wave> {
        let bucket = host_bucket(&self.salt, host);
        self.waves.iter().find(|w| {
            let by_glob = w.hosts.as_ref().map(|set| set.is_match(host));
            let by_share = w.upto_bucket.map(|upto| bucket < upto);
            match (by_glob, by_share) {
                (None, None) => true,
                (g, s) => g == Some(true) || s == Some(true),
            }
        })
    }

    fn longest_delay_ms(&self) -> i64 {
        self.waves.iter().map(|w| w.delay_ms).max().unwrap_or(0)
    }
}

/// What a host knows about a fetched commit when it decides.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The commit's policy; `None` when it has no policy file.
    pub policy: Option<&'a Policy>,
    pub host: &'a str,
    /// Committer time, milliseconds since the epoch, if known.
    pub committer_ms: Option<i64>,
    /// When this host first fetched the commit, by its own clock.
    pub first_seen_ms: i64,
    /// The commit's units equal a set this host runs or ran (see [`HISTORY`]).
    pub ran_before: bool,
    /// The host has applied nothing yet (a new host joins at the tip: nothing to protect).
    pub nothing_applied: bool,
}

/// Why a commit applies when it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No policy file: apply at once, as without rollouts.
    NoPolicy,
    /// Nothing applied on this host yet.
    FirstCommit,
    /// Units this host runs or ran before: a revert (or a change outside the units).
    RanBefore,
    /// `immediate = true`.
    Immediate,
    /// The host's wave delay.
    Wave,
    /// `halt = true`: held until a newer commit says otherwise.
    Halted,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::NoPolicy => "no-policy",
            Reason::FirstCommit => "first-commit",
            Reason::RanBefore => "ran-before",
            Reason::Immediate => "immediate",
            Reason::Wave => "wave",
            Reason::Halted => "halted",
        })
    }
}

/// When a host applies a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The host's wave, when the policy has waves.
    pub wave: Option<String>,
    /// When to apply, ms since the epoch (may be in the past: at once); `None`: halted.
    pub apply_at_ms: Option<i64>,
    pub reason: Reason,
}

/// Decides when this host applies a commit (see the module comment for the rules).
pub fn plan(facts: &Facts<'_>) -> Plan {
    let now = facts.first_seen_ms;
    let Some(policy) = facts.policy else {
        return Plan {
            wave: None,
            apply_at_ms: Some(now),
            reason: Reason::NoPolicy,
        };
    };
    let wave = policy.wave_of(facts.host);
    let wave_name = wave.map(|w| w.name.clone());
    let at_once = |reason| Plan {
        wave: wave_name.clone(),
        apply_at_ms: Some(now),
        reason,
    };
    if facts.ran_before {
        return at_once(Reason::RanBefore);
    }
    if facts.nothing_applied {
        return at_once(Reason::FirstCommit);
    }
    if policy.halt {
        return Plan {
            wave: wave_name,
            apply_at_ms: None,
            reason: Reason::Halted,
        };
    }
    if policy.immediate {
        return at_once(Reason::Immediate);
    }
    let delay = wave.map_or_else(|| policy.longest_delay_ms(), |w| w.delay_ms);
    let committed = facts.committer_ms.unwrap_or(now);
    let start = committed.clamp(now.saturating_sub(policy.max_skew_ms), now);
    Plan {
        wave: wave_name,
        apply_at_ms: Some(start.saturating_add(delay)),
        reason: Reason::Wave,
    }
}

/// A digest of the units directory without the policy file: equal digests mean the same
/// units, whatever the policy says (so a halt or a wave edit never hides a revert).
pub fn units_digest(tree: &FileTree) -> String {
    let mut h = Fnv128::new();
    h.part(b"gitproc-units-v1");
    for (path, entry) in &tree.entries {
        if path == POLICY_FILE {
            continue;
        }
        h.part(path.as_bytes());
        match entry {
            Entry::File(bytes) => {
                h.part(b"f");
                h.part(bytes);
            }
            Entry::Symlink(target) => {
                h.part(b"l");
                h.part(target.as_bytes());
            }
        }
    }
    for (path, size) in &tree.oversized {
        h.part(b"o");
        h.part(path.as_bytes());
        h.part(&size.to_le_bytes());
    }
    h.hex()
}

/// The tree's policy: `None` without a policy file, else the parse result.
pub fn policy_of(tree: &FileTree) -> Option<Result<Policy, String>> {
    match tree.entries.get(POLICY_FILE) {
        None => None,
        Some(Entry::File(bytes)) => Some(parse(bytes)),
        Some(Entry::Symlink(_)) => Some(Err(format!(
            "{POLICY_FILE} is a symbolic link; commit the policy as a regular file"
        ))),
    }
    .or_else(|| {
        tree.oversized
            .get(POLICY_FILE)
            .map(|size| Err(FileTree::oversized_error(POLICY_FILE, *size)))
    })
}

/// Appends `digest` to a host's applied history (newest last, at most [`HISTORY`], no
/// repeats of the newest).
pub fn remember(history: &mut Vec<String>, digest: &str) {
    history.retain(|d| d != digest);
    history.push(digest.to_string());
    if history.len() > HISTORY {
        let excess = history.len() - HISTORY;
        history.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLEET: &str = r#"
max_skew_s = 60
[[wave]]
name = "canary"
hosts = ["canary-*", "host-000"]
delay_s = 0
[[wave]]
name = "ten"
percent = 10
delay_s = 2
[[wave]]
name = "rest"
delay_s = 4.5
"#;

    fn facts<'a>(policy: &'a Policy, host: &'a str) -> Facts<'a> {
        Facts {
            policy: Some(policy),
            host,
            committer_ms: Some(1_000_000),
            first_seen_ms: 1_000_500,
            ran_before: false,
            nothing_applied: false,
        }
    }

    fn hosts_in(policy: &Policy, wave: &str) -> Vec<String> {
        (0..1000)
            .map(|i| format!("host-{i:03}"))
            .filter(|h| policy.wave_of(h).map(|w| w.name.as_str()) == Some(wave))
            .collect()
    }

    #[test]
    fn waves_are_first_match_and_shares_are_stable() {
        let p = parse(FLEET.as_bytes()).unwrap();
        assert_eq!(p.wave_of("canary-eu1").unwrap().name, "canary");
        assert_eq!(p.wave_of("host-000").unwrap().name, "canary");
        let ten = hosts_in(&p, "ten");
        // About 10 % of 999 non-canary hosts; the same ones on every run.
        assert!((70..=130).contains(&ten.len()), "{}", ten.len());
        assert!(!ten.contains(&"host-000".to_string()));
        assert_eq!(ten, hosts_in(&p, "ten"));
        assert_eq!(hosts_in(&p, "rest").len(), 999 - ten.len());
        // FNV-1a pinned: a release that changed the hash would reshuffle every fleet.
        assert_eq!(
            host_bucket("", "host-001"),
            fnv1a_64(b"\0host-001") % 10_000
        );
    }

    #[test]
    fn the_salt_picks_other_hosts() {
        let p = parse(FLEET.as_bytes()).unwrap();
        let mut salted = p.clone();
        salted.salt = "2026-12".into();
        assert_ne!(hosts_in(&p, "ten"), hosts_in(&salted, "ten"));
    }

    #[test]
    fn delay_counts_from_the_committer_time() {
        let p = parse(FLEET.as_bytes()).unwrap();
        let ten = hosts_in(&p, "ten").remove(0);
        let rest = hosts_in(&p, "rest").remove(0);
        assert_eq!(plan(&facts(&p, "host-000")).apply_at_ms, Some(1_000_000));
        let t = plan(&facts(&p, &ten));
        assert_eq!(
            (t.apply_at_ms, t.wave.as_deref(), t.reason),
            (Some(1_002_000), Some("ten"), Reason::Wave)
        );
        assert_eq!(plan(&facts(&p, &rest)).apply_at_ms, Some(1_004_500));
    }

    #[test]
    fn clock_skew_is_bounded_both_ways() {
        let p = parse(FLEET.as_bytes()).unwrap();
        let rest = hosts_in(&p, "rest").remove(0);
        // A committer clock an hour ahead: counts from when the host saw it.
        let mut f = facts(&p, &rest);
        f.committer_ms = Some(f.first_seen_ms + 3_600_000);
        assert_eq!(plan(&f).apply_at_ms, Some(f.first_seen_ms + 4_500));
        // An hour behind: never earlier than max_skew before first sight.
        f.committer_ms = Some(f.first_seen_ms - 3_600_000);
        assert_eq!(plan(&f).apply_at_ms, Some(f.first_seen_ms - 60_000 + 4_500));
    }

    #[test]
    fn halt_holds_but_reverts_and_new_hosts_go() {
        let mut p = parse(FLEET.as_bytes()).unwrap();
        p.halt = true;
        p.immediate = true;
        let f = facts(&p, "host-000");
        let held = plan(&f);
        assert_eq!((held.apply_at_ms, held.reason), (None, Reason::Halted));
        let revert = plan(&Facts {
            ran_before: true,
            ..f
        });
        assert_eq!(
            (revert.apply_at_ms, revert.reason),
            (Some(f.first_seen_ms), Reason::RanBefore)
        );
        let new_host = plan(&Facts {
            nothing_applied: true,
            ..f
        });
        assert_eq!(new_host.reason, Reason::FirstCommit);
    }

    #[test]
    fn immediate_and_no_policy_apply_at_once() {
        let mut p = parse(FLEET.as_bytes()).unwrap();
        p.immediate = true;
        let f = facts(&p, "host-999");
        assert_eq!(plan(&f).reason, Reason::Immediate);
        assert_eq!(plan(&f).apply_at_ms, Some(f.first_seen_ms));
        let none = plan(&Facts { policy: None, ..f });
        assert_eq!(none.reason, Reason::NoPolicy);
    }

    #[test]
    fn unmatched_hosts_wait_the_longest() {
        let p = parse(
            b"[[wave]]\nhosts = [\"a*\"]\ndelay_s = 1\n[[wave]]\nhosts = [\"b*\"]\ndelay_s = 7\n",
        )
        .unwrap();
        let f = facts(&p, "zed");
        let z = plan(&f);
        assert_eq!((z.wave, z.apply_at_ms), (None, Some(1_007_000)));
    }

    #[test]
    fn bad_policies_are_named() {
        for (text, needle) in [
            ("halt = 3", "halt"),
            ("[[wave]]\npercent = 101", "percent = 101"),
            (
                "[[wave]]\nname = \"x\"\ndelay_s = -1",
                "wave \"x\": delay_s",
            ),
            ("[[wave]]\nhosts = [\"a[\"]", "host glob"),
            ("haltt = true", "haltt"),
            ("max_skew_s = 1e12", "max_skew_s"),
        ] {
            let err = parse(text.as_bytes()).unwrap_err();
            assert!(err.contains(POLICY_FILE) && err.contains(needle), "{err}");
        }
        assert!(parse(b"\xff").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn the_digest_ignores_the_policy() {
        let mut t = FileTree::default();
        t.entries
            .insert("a.service".into(), Entry::File(b"[Service]".to_vec()));
        let d = units_digest(&t);
        t.entries
            .insert(POLICY_FILE.into(), Entry::File(b"halt = true".to_vec()));
        assert_eq!(units_digest(&t), d);
        assert!(matches!(policy_of(&t), Some(Ok(p)) if p.halt));
        t.entries
            .insert("a.service".into(), Entry::File(b"[Service] ".to_vec()));
        assert_ne!(units_digest(&t), d);
    }

    #[test]
    fn history_is_short_and_ordered() {
        let mut h = Vec::new();
        for d in ["a", "b", "a", "c", "d", "e"] {
            remember(&mut h, d);
        }
        assert_eq!(h, ["a", "c", "d", "e"]);
    }
}
