//! The source worker: the thread that talks to git so the event loop never waits on a
//! network or a disk full of objects.
//!
//! It owns the [`GitSource`] (or the development directory), the [`PollSchedule`] and the
//! inotify ref watcher. Each check ends in one [`SourceUpdate`] for the loop: the new unit
//! set when the tip moved (parsed here, off the loop), or just the schedule when it did not.
//! Errors are logged once per change of failure kind, never once per poll.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, select};

use crate::source::{GitSource, PollSchedule, SignaturePolicy, SourceConfig};
use crate::tree::FileTree;
use crate::unit::{LoadedUnit, SpecifierContext};

/// Where units come from.
pub enum Origin {
    /// A git repository, mirrored under the state directory.
    Git(SourceConfig),
    /// Development mode: a plain directory, no git (`gitproc daemon --dir`).
    Dir(PathBuf),
}

pub struct WorkerConfig {
    pub origin: Origin,
    pub poll: crate::source::PollConfig,
    pub signing: Option<SignaturePolicy>,
    pub ctx: SpecifierContext,
    /// The commit a previous daemon had applied (from `state.json`).
    pub baseline: Option<String>,
    /// The host was frozen when the daemon started (see [`Worker::baseline_first`]).
    pub frozen: bool,
}

/// Requests from the loop.
#[derive(Debug)]
pub enum WorkerCommand {
    /// Check now (`gitproc sync`, SIGHUP); `token` comes back in the update.
    CheckNow { token: Option<u64> },
}

/// A new unit set read from one commit.
#[derive(Debug)]
pub struct Snapshot {
    /// Full commit id; `None` in directory mode.
    pub commit: Option<String>,
    pub subject: Option<String>,
    pub commit_time: Option<i64>,
    /// Committer time, seconds since the epoch (what rollout delays count from).
    pub committer_time: Option<i64>,
    /// The commit's rollout policy (`None`: no policy file; `Some(Err)`: an invalid one).
    pub policy: Option<Result<crate::rollout::Policy, String>>,
    /// The units without the policy ([`crate::rollout::units_digest`]).
    pub digest: String,
    /// The commit a previous daemon had applied, re-read at start-up so that a frozen or
    /// rolling-out host restarts on what it ran, not on a tip it has not applied yet: the
    /// loop applies it at once, ungated.
    pub baseline: bool,
    pub units: BTreeMap<String, LoadedUnit>,
    /// The `.timer` units, apart from the services (see [`crate::unit::load::load_timers`]).
    pub timers: BTreeMap<String, LoadedUnit>,
    /// The `.socket` units, likewise (see [`crate::unit::load::load_sockets`]).
    pub sockets: BTreeMap<String, LoadedUnit>,
    pub fetch_time: Duration,
    pub parse_time: Duration,
}

/// The result of one check.
#[derive(Debug)]
pub struct SourceUpdate {
    pub token: Option<u64>,
    pub checked_at: SystemTime,
    pub next_check: Option<SystemTime>,
    pub poll_interval: Duration,
    /// The tip that was seen (even when unchanged).
    pub tip: Option<String>,
    /// `Some` when there is a new unit set to apply.
    pub snapshot: Option<Snapshot>,
    /// Why this check failed; the last good state stays applied.
    pub error: Option<String>,
}

/// Starts the worker thread. The first check runs at once.
pub fn start(
    config: WorkerConfig,
    commands: Receiver<WorkerCommand>,
    updates: Sender<SourceUpdate>,
) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("source".into())
        .spawn(move || {
            // gix forks git-upload-pack, ssh and ssh-keygen here and waits for them.
            super::reaper::leave_my_children();
            Worker::new(config, updates).run(commands)
        })?;
    Ok(())
}

struct Worker {
    config: WorkerConfig,
    git: Option<GitSource>,
    schedule: PollSchedule,
    updates: Sender<SourceUpdate>,
    /// The tip whose units were last sent to the loop.
    sent_tip: Option<String>,
    /// Directory mode: the content hashes last sent.
    sent_hashes: Option<BTreeMap<String, String>>,
    /// Kind of the last failure, to log each failure state once.
    last_error_kind: Option<String>,
    /// Modification stamp of the allowed-signers file when a tip was last rejected.
    signers_stamp: Option<SystemTime>,
    /// A baseline snapshot to send before the next update (see [`Snapshot::baseline`]).
    baseline: Option<Snapshot>,
    _watcher: Option<crate::source::RefWatcher>,
    watch_rx: Receiver<()>,
    /// The last failure of that fetch, logged once until it changes or succeeds.
    mirror_error: Option<String>,
}

impl Worker {
    fn new(config: WorkerConfig, updates: Sender<SourceUpdate>) -> Worker {
        let schedule = PollSchedule::new(config.poll, entropy_seed());
        let (watch_tx, watch_rx) = crossbeam_channel::bounded(1);
        let mut worker = Worker {
            config,
            git: None,
            schedule,
            updates,
            sent_tip: None,
            sent_hashes: None,
            last_error_kind: None,
            signers_stamp: None,
            baseline: None,
            _watcher: None,
            watch_rx,
            mirror_error: None,
        };
        if let Origin::Git(cfg) = &worker.config.origin
            && let Some(path) = local_repo_path(&cfg.url)
        {
            match crate::source::watch(&path, watch_tx) {
                Ok(w) => {
                    tracing::info!("watching refs of {} for instant updates", path.display());
                    worker._watcher = Some(w);
                    worker.schedule.set_watched(true);
                }
                Err(err) => tracing::warn!("{err}"),
            }
        }
        if worker._watcher.is_none() {
            // Its sender is gone, and a disconnected receiver is always ready: `run`'s
            // select would spin, re-checking the source back to back (a whole CPU, and a
            // fetch storm on a remote). Without a watcher, only the schedule wakes us.
            worker.watch_rx = crossbeam_channel::never();
        }
        worker
    }

    fn run(mut self, commands: Receiver<WorkerCommand>) {
        let mut token = None;
        loop {
            let update = self.check(token.take());
            if let Some(baseline) = self.baseline.take() {
                let first = SourceUpdate {
                    token: None,
                    checked_at: update.checked_at,
                    next_check: update.next_check,
                    poll_interval: update.poll_interval,
                    tip: update.tip.clone(),
                    snapshot: Some(baseline),
                    error: None,
                };
                if self.updates.send(first).is_err() {
                    return;
                }
            }
            if self.updates.send(update).is_err() {
                return;
            }
            if self.git.as_ref().is_some_and(GitSource::mirror_behind) {
                self.catch_up_mirror();
            }
            let wait = self
                .schedule
                .next_check()
                .map(|at| at.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(10));
            select! {
                recv(commands) -> cmd => match cmd {
                    Ok(WorkerCommand::CheckNow { token: t }) => token = t,
                    Err(_) => return,
                },
                recv(self.watch_rx) -> _ => {
                    tracing::debug!("ref change noticed; checking now");
                }
                default(wait) => {}
            }
        }
    }

    fn check(&mut self, token: Option<u64>) -> SourceUpdate {
        let started = Instant::now();
        let result = match &self.config.origin {
            Origin::Git(_) => self.check_git(),
            Origin::Dir(dir) => {
                let dir = dir.clone();
                self.check_dir(&dir)
            }
        };
        let now = Instant::now();
        let (tip, snapshot, error) = match result {
            Ok((tip, snapshot)) => {
                let changed = snapshot.is_some();
                self.schedule.on_check(changed, now);
                if self.last_error_kind.take().is_some() {
                    tracing::info!("source recovered");
                }
                (tip, snapshot, None)
            }
            Err((kind, message)) => {
                self.schedule.on_error(now);
                if self.last_error_kind.as_deref() != Some(kind.as_str()) {
                    tracing::error!("{message}");
                    self.last_error_kind = Some(kind);
                }
                (None, None, Some(message))
            }
        };
        let next_check = self
            .schedule
            .next_check()
            .map(|at| SystemTime::now() + at.saturating_duration_since(Instant::now()));
        tracing::debug!("check took {:?}", started.elapsed());
        SourceUpdate {
            token,
            checked_at: SystemTime::now(),
            next_check,
            poll_interval: self.schedule.interval(),
            tip,
            snapshot,
            error,
        }
    }

    /// One git check: ref advertisement, fetch if moved, verify, read and parse.
    #[allow(clippy::type_complexity)]
    fn check_git(&mut self) -> Result<(Option<String>, Option<Snapshot>), (String, String)> {
        let Origin::Git(cfg) = &self.config.origin else {
            return Ok((None, None));
        };
        if self.git.is_none() {
            let source =
                GitSource::open(cfg.clone()).map_err(|e| (e.kind().to_string(), e.to_string()))?;
            self.git = Some(source);
        }
        let signers_changed = self.signers_changed();
        let Some(git) = self.git.as_mut() else {
            return Ok((None, None));
        };
        let fetch_started = Instant::now();
        // A local repository's new tip is read from the repository itself, and fetched
        // into the mirror once the loop has its units (`catch_up_mirror`): the fetch is
        // two git processes, most of the time from launch to the first child otherwise.
        // Not when signatures are required: those are verified on the mirror's copy.
        let unmirrored = match self.config.signing {
            None => git.local_unmirrored_tip(),
            Some(_) => None,
        };
        let tip = if let Some(tip) = unmirrored {
            tip
        } else {
            match git.check() {
                Ok(outcome) => outcome.tip,
                Err(err) => {
                    // At start-up with the remote unreachable, the mirror still holds the last
                    // fetched tip: run that rather than nothing, and keep retrying the remote.
                    let fallback = self
                        .sent_tip
                        .is_none()
                        .then(|| git.mirrored_tip())
                        .flatten();
                    match fallback {
                        Some(tip) => {
                            tracing::error!("{err}; starting from the last fetched commit {tip}");
                            self.last_error_kind = Some(err.kind().to_string());
                            tip
                        }
                        None => return Err((err.kind().to_string(), err.to_string())),
                    }
                }
            }
        };
        let fetch_time = fetch_started.elapsed();
        if self.sent_tip.as_deref() == Some(tip.as_str()) && !signers_changed {
            return Ok((Some(tip), None));
        }
        if let Some(policy) = &self.config.signing
            && let Err(err) = git.verify_signature(&tip, policy)
        {
            self.signers_stamp = signers_stamp(policy);
            let short = tip.get(..10).unwrap_or(&tip);
            return Err((
                format!("signature:{tip}"),
                format!("commit {short} not applied: {err}"),
            ));
        }
        let tree = git
            .read_units(&tip)
            .map_err(|e| (e.kind().to_string(), e.to_string()))?;
        if self.sent_tip.is_none() {
            self.baseline = baseline_first(&self.config, git, &tip, &tree);
        }
        let snapshot = commit_snapshot(git, &self.config.ctx, &tip, &tree, fetch_time);
        self.sent_tip = Some(tip.clone());
        Ok((Some(tip), Some(snapshot)))
    }

    /// Fetches into the mirror the local tip that was read from the repository itself. A
    /// failure is logged and retried after the next check, which finds the mirror behind
    /// again; the units already run meanwhile.
    fn catch_up_mirror(&mut self) {
        let Some(git) = self.git.as_mut() else {
            return;
        };
        match git.check() {
            Ok(_) => {
                if self.mirror_error.take().is_some() {
                    tracing::info!("the mirror has fetched the repository's tip again");
                }
            }
            Err(err) => {
                let message = err.to_string();
                if self.mirror_error.as_deref() != Some(message.as_str()) {
                    tracing::warn!(
                        "{message}; the units were read from the repository itself, the mirror is fetched again after each check"
                    );
                    self.mirror_error = Some(message);
                }
            }
        }
    }

    /// Whether the allowed-signers file changed since a tip was rejected (re-verify then).
    fn signers_changed(&self) -> bool {
        match (&self.config.signing, self.signers_stamp) {
            (Some(policy), Some(stamp)) => signers_stamp(policy) != Some(stamp),
            _ => false,
        }
    }

    #[allow(clippy::type_complexity)]
    fn check_dir(
        &mut self,
        dir: &std::path::Path,
    ) -> Result<(Option<String>, Option<Snapshot>), (String, String)> {
        let parse_started = Instant::now();
        let tree = crate::source::dir::read_tree(dir).map_err(|e| {
            (
                "dir".to_string(),
                format!("cannot read units directory {}: {e}", dir.display()),
            )
        })?;
        let (units, timers, sockets) = load_sets(&tree, &self.config.ctx);
        let hashes: BTreeMap<String, String> = units
            .iter()
            .chain(&timers)
            .chain(&sockets)
            .map(|(name, u)| (name.clone(), u.content_hash.clone()))
            .collect();
        if self.sent_hashes.as_ref() == Some(&hashes) {
            return Ok((None, None));
        }
        self.sent_hashes = Some(hashes);
        Ok((
            None,
            Some(Snapshot {
                commit: None,
                subject: None,
                commit_time: None,
                committer_time: None,
                policy: None,
                digest: crate::rollout::units_digest(&tree),
                baseline: false,
                units,
                timers,
                sockets,
                fetch_time: Duration::ZERO,
                parse_time: parse_started.elapsed(),
            }),
        ))
    }
}

/// At start-up, when the tip is not what the previous daemon applied and the host may
/// not take it at once (frozen, or the tip carries a rollout policy), the applied commit
/// is read from the mirror and sent first, so the services come back as they ran.
fn baseline_first(
    config: &WorkerConfig,
    git: &GitSource,
    tip: &str,
    tip_tree: &FileTree,
) -> Option<Snapshot> {
    let applied = config.baseline.as_deref()?;
    if applied == tip
        || !(config.frozen || tip_tree.entries.contains_key(crate::rollout::POLICY_FILE))
    {
        return None;
    }
    match git.read_units(applied) {
        Ok(tree) => {
            let mut snapshot = commit_snapshot(git, &config.ctx, applied, &tree, Duration::ZERO);
            snapshot.baseline = true;
            Some(snapshot)
        }
        Err(err) => {
            tracing::warn!(
                "cannot re-read the previously applied commit {applied} ({err}); the tip {tip} is gated from nothing"
            );
            None
        }
    }
}

/// Reads and parses one commit's units (off the loop) into a snapshot.
fn commit_snapshot(
    git: &GitSource,
    ctx: &SpecifierContext,
    commit: &str,
    tree: &FileTree,
    fetch_time: Duration,
) -> Snapshot {
    let info = git.commit_info(commit).ok();
    let parse_started = Instant::now();
    let (units, timers, sockets) = load_sets(tree, ctx);
    Snapshot {
        commit: Some(commit.to_string()),
        subject: info.as_ref().map(|i| i.subject.clone()),
        commit_time: info.as_ref().map(|i| i.author_time),
        committer_time: info.as_ref().map(|i| i.committer_time),
        policy: crate::rollout::policy_of(tree),
        digest: crate::rollout::units_digest(tree),
        baseline: false,
        units,
        timers,
        sockets,
        fetch_time,
        parse_time: parse_started.elapsed(),
    }
}

fn signers_stamp(policy: &SignaturePolicy) -> Option<SystemTime> {
    let path = match policy {
        SignaturePolicy::Ssh {
            allowed_signers, ..
        } => allowed_signers,
        SignaturePolicy::Gpg { home } => home,
    };
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The filesystem path of a repository URL that is local (a path or `file://`), for the
/// inotify fast path.
pub fn local_repo_path(url: &str) -> Option<PathBuf> {
    if let Some(path) = url.strip_prefix("file://") {
        return Some(PathBuf::from(path));
    }
    if url.contains("://") {
        return None;
    }
    // scp-style `host:path` has a colon before any slash; a local path does not.
    if let Some(colon) = url.find(':')
        && !url[..colon].contains('/')
    {
        return None;
    }
    Some(PathBuf::from(url))
}

/// A poll-jitter seed from the process id and the wall clock, so machines (and restarts)
/// started at the same moment still drift apart. (The schedule itself is pure: the seed is
/// its only source of randomness.)
fn entropy_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15
}

/// The services, timers and sockets of `tree`, with `Alias=` names resolved across them
/// ([`crate::unit::load::resolve_aliases`]).
#[allow(clippy::type_complexity)]
fn load_sets(
    tree: &crate::tree::FileTree,
    ctx: &crate::unit::specifier::SpecifierContext,
) -> (
    BTreeMap<String, crate::unit::load::LoadedUnit>,
    BTreeMap<String, crate::unit::load::LoadedUnit>,
    BTreeMap<String, crate::unit::load::LoadedUnit>,
) {
    let mut units = crate::unit::load_tree_with(tree, ctx, &crate::runtime::unit_host::RealHost);
    let mut timers = crate::unit::load::load_timers(tree, ctx);
    let mut sockets = crate::unit::load::load_sockets(tree, ctx);
    crate::unit::load::resolve_aliases(crate::unit::load::UnitSets {
        services: &mut units,
        timers: &mut timers,
        sockets: &mut sockets,
    });
    (units, timers, sockets)
}

#[cfg(test)]
mod tests {
    use super::local_repo_path;
    use std::path::PathBuf;

    #[test]
    fn local_paths_are_recognised() {
        assert_eq!(
            local_repo_path("/srv/units"),
            Some(PathBuf::from("/srv/units"))
        );
        assert_eq!(local_repo_path("."), Some(PathBuf::from(".")));
        assert_eq!(
            local_repo_path("file:///srv/u.git"),
            Some(PathBuf::from("/srv/u.git"))
        );
        assert_eq!(local_repo_path("https://h/u.git"), None);
        assert_eq!(local_repo_path("git@host:ops/u.git"), None);
        assert_eq!(local_repo_path("./a:b"), Some(PathBuf::from("./a:b")));
    }
}
