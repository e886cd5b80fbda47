//! Accounts: account names and salted argon2id password hashes, kept in a
//! plain-text file an administrator can read and edit.
//!
//! The file has one account per line, `NAME PHC`, where PHC is the argon2id
//! hash in the PHC string format (`$argon2id$v=19$m=...,t=...,p=...$SALT$HASH`).
//! Lines starting with `#` and blank lines are kept as they are. A password
//! is never stored, logged or echoed; only its hash is.
//!
//! Nothing here knows about sockets or the room. Hashing is slow on purpose
//! (milliseconds), so the room never calls it: it hands an [`AuthJob`] to the
//! event loop, which runs at most one per turn (see docs/architecture.md,
//! "Accounts"). New accounts are budgeted ([`NewAccountBudget`]), because
//! each costs a hash and a rewrite of the file.
//!
//! The file holds password hashes, so it is created `0600`. A running server
//! holds a [`FileLock`] on `FILE.lock` beside it (a second server on the
//! same file is refused), and every writer, the server's saves and the
//! admin commands, takes the edit lock on `FILE.edit.lock` while it reads,
//! changes and rewrites the file, so no writer undoes another's change.
//! The server notices a change made by an admin command (on SIGHUP, and
//! before each save) by the file's identity on disk ([`DiskId`]).

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config;
use crate::protocol;

/// The first line of a new accounts file.
const HEADER: &str = "# loopchat accounts: NAME ARGON2ID-PHC-STRING, one per line. \
Edit with loopchat-server --add-user / --remove-user (a running server re-reads it on SIGHUP).";

/// A login or registration the room wants checked; run by the event loop.
/// `Debug` hides the password, so a stray `{:?}` cannot log it.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthJob {
    /// The account name as the user typed it.
    pub name: String,
    pub password: String,
}

impl fmt::Debug for AuthJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthJob")
            .field("name", &self.name)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// What came of an [`AuthJob`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// A known name with the right password; `name` as stored.
    LoggedIn {
        name: String,
    },
    /// An unknown name, now registered: in memory by [`run_job`], and
    /// acknowledged by the loop only once [`Accounts::commit`] saved it.
    Registered {
        name: String,
    },
    WrongPassword,
    /// An unknown name with a password shorter than `min` characters.
    TooShort {
        min: usize,
    },
    /// The account could not be saved; the user is not registered.
    SaveFailed,
    /// An unknown name, but the budget of new accounts is spent; nothing
    /// was hashed or saved.
    NoNewAccounts(Spent),
}

/// One line of the file.
#[derive(Debug, Clone)]
enum Entry {
    /// A comment or blank line, kept verbatim.
    Other(String),
    Account {
        name: String,
        phc: String,
    },
}

/// The accounts, in file order, with an index by lowercased name.
#[derive(Debug, Clone)]
pub struct Accounts {
    path: PathBuf,
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    /// The file as last read or written (`None`: it did not exist).
    disk: Option<DiskId>,
}

/// Which file is on disk under the path, and which version of it: an edit
/// by another process (an atomic save renames a new file over the old, so
/// the inode changes; an editor may keep it) changes one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl DiskId {
    /// The identity of the file at `path`; `None` if there is none.
    fn of(path: &Path) -> Option<DiskId> {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(path).ok()?;
        Some(DiskId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }
}

impl Accounts {
    /// Reads `path`; a missing file is an empty store (created on the first
    /// save). Errors read `accounts file PATH line N: WHY`.
    pub fn load(path: &Path) -> Result<Accounts, String> {
        // Before reading: a change between the two shows as a change later.
        let disk = DiskId::of(path);
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Accounts::from_entries(
                    path,
                    vec![Entry::Other(HEADER.to_string())],
                    None,
                ));
            }
            Err(e) => return Err(format!("accounts file {}: {e}", path.display())),
        };
        let entries = parse(&text)
            .map_err(|(n, why)| format!("accounts file {} line {n}: {why}", path.display()))?;
        Ok(Accounts::from_entries(path, entries, disk))
    }

    /// Whether the file on disk is not the one last read or written here
    /// (another process saved it, or it was removed or created).
    pub fn changed_on_disk(&self) -> bool {
        DiskId::of(&self.path) != self.disk
    }

    /// SIGHUP: re-reads the file if it changed on disk, under the edit
    /// lock. `Ok(None)`: unchanged, nothing read; `Ok(Some(n))`: re-read,
    /// `n` accounts now. On an error (a malformed line, say) the store is
    /// left as it was.
    pub fn reload_if_changed(&mut self) -> Result<Option<usize>, String> {
        if !self.changed_on_disk() {
            return Ok(None);
        }
        let _edit = FileLock::edit(&self.path)?;
        let fresh = Accounts::load(&self.path)?;
        *self = fresh;
        Ok(Some(self.len()))
    }

    /// Group commit: saves the store with the accounts `names` (added in
    /// memory by [`run_job`] since the last save) in ONE atomic write,
    /// under the edit lock. If the file changed on disk meanwhile (an admin
    /// command), it is re-read first and `names` are added to it, so that
    /// change is kept. Returns the names that could not be kept (the file
    /// now has an account of that name); on an error nothing of `names` is
    /// kept, in memory or on disk.
    pub fn commit(&mut self, names: &[String]) -> Result<Vec<String>, String> {
        let held: Vec<(String, String)> = names
            .iter()
            .filter_map(|n| self.lookup(n).map(|(n, p)| (n.to_string(), p.to_string())))
            .collect();
        let result = (|| {
            let _edit = FileLock::edit(&self.path)?;
            let mut lost = Vec::new();
            if self.changed_on_disk() {
                let mut fresh = Accounts::load(&self.path)?;
                for (name, phc) in &held {
                    if fresh.add(name, phc).is_err() {
                        lost.push(name.clone());
                    }
                }
                *self = fresh;
            }
            self.save_atomic()
                .map_err(|e| format!("cannot save {}: {e}", self.path.display()))?;
            Ok(lost)
        })();
        if result.is_err() {
            for (name, _) in &held {
                self.remove(name);
            }
        }
        result
    }

    fn from_entries(path: &Path, entries: Vec<Entry>, disk: Option<DiskId>) -> Accounts {
        let mut a = Accounts {
            path: path.to_path_buf(),
            entries,
            index: HashMap::new(),
            disk,
        };
        a.reindex();
        a
    }

    fn reindex(&mut self) {
        self.index.clear();
        for (i, e) in self.entries.iter().enumerate() {
            if let Entry::Account { name, .. } = e {
                self.index.insert(name.to_ascii_lowercase(), i);
            }
        }
    }

    /// The file this store is saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The stored name and PHC string of `name` (case-insensitive).
    pub fn lookup(&self, name: &str) -> Option<(&str, &str)> {
        match self
            .entries
            .get(*self.index.get(&name.to_ascii_lowercase())?)?
        {
            Entry::Account { name, phc } => Some((name, phc)),
            Entry::Other(_) => None,
        }
    }

    /// Adds an account (in memory only; see [`save_atomic`](Self::save_atomic)).
    pub fn add(&mut self, name: &str, phc: &str) -> Result<(), String> {
        protocol::validate_nick(name).map_err(|e| format!("invalid name {name:?}: {e}"))?;
        if self.lookup(name).is_some() {
            return Err(format!("account {name} already exists"));
        }
        self.index
            .insert(name.to_ascii_lowercase(), self.entries.len());
        self.entries.push(Entry::Account {
            name: name.to_string(),
            phc: phc.to_string(),
        });
        Ok(())
    }

    /// Removes an account (in memory only). Returns whether it existed.
    pub fn remove(&mut self, name: &str) -> bool {
        let Some(i) = self.index.get(&name.to_ascii_lowercase()).copied() else {
            return false;
        };
        self.entries.remove(i);
        self.reindex();
        true
    }

    /// The file's text.
    fn render(&self) -> String {
        let mut text = String::new();
        for e in &self.entries {
            match e {
                Entry::Other(line) => text.push_str(line),
                Entry::Account { name, phc } => {
                    text.push_str(name);
                    text.push(' ');
                    text.push_str(phc);
                }
            }
            text.push('\n');
        }
        text
    }

    /// Writes the store so that a crash at any point leaves either the old
    /// file or the new one, never a mix: a temporary file in the same
    /// folder, fsync, rename over the old, fsync the folder (the rename is
    /// durable only once the folder is).
    pub fn save_atomic(&mut self) -> io::Result<()> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if self.path.file_name().is_none() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no file name"));
        }
        let tmp = self.tmp_path();
        let result = (|| {
            // Password hashes: 0600 for a new file; an existing one keeps
            // its mode, without access for others (never wider than it was).
            let mode = match fs::metadata(&self.path) {
                Ok(m) => m.permissions().mode() & 0o660,
                Err(e) if e.kind() == io::ErrorKind::NotFound => 0o600,
                Err(e) => return Err(e),
            };
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            // `.mode` applies only when the file is created, not to a
            // temporary file left over by a crash; this applies to both.
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            give_to_owner(&f, &self.path, &dir);
            f.write_all(self.render().as_bytes())?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &self.path)?;
            File::open(&dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        self.disk = DiskId::of(&self.path);
        result
    }

    /// The temporary file `save_atomic` writes, beside the file.
    fn tmp_path(&self) -> PathBuf {
        let mut name = std::ffi::OsString::from(".");
        name.push(self.path.file_name().unwrap_or_default());
        name.push(".tmp");
        self.path.with_file_name(name)
    }

    /// At start-up: fails, with the reason, unless a registration could be
    /// saved. A missing file is created (with the header, `0600`); for an
    /// existing one, creating and removing the temporary file shows that
    /// its folder takes the new file and the rename.
    pub fn ensure_writable(&mut self) -> Result<(), String> {
        let path = self.path.clone();
        let why = |e: io::Error| format!("accounts file {}: cannot write it: {e}", path.display());
        if !self.path.exists() {
            return self.save_atomic().map_err(why);
        }
        let tmp = self.tmp_path();
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(why)?;
        fs::remove_file(&tmp).map_err(why)
    }
}

/// An exclusive `flock` beside an accounts file, held for as long as this
/// value lives (the kernel releases it when the process dies, even by
/// `SIGKILL`). Two of them: [`FileLock::acquire`] on `FILE.lock`, held by a
/// running server for its lifetime (so a second server is refused), and
/// [`FileLock::edit`] on `FILE.edit.lock`, held by whoever reads, changes
/// and rewrites the file, briefly (a server's save, `--add-user`). The
/// locks are not on the file itself because `save_atomic` replaces that
/// file by a rename, and a lock on the old file would not cover the new one.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Takes the lock for the accounts file `path`, or says why not. The
    /// lock file is created (`0600`) and never removed: removing it would
    /// let two processes lock two different files of the same name.
    pub fn acquire(path: &Path) -> Result<FileLock, String> {
        FileLock::take(path, ".lock", false)
    }

    /// Takes the edit lock for the accounts file `path`, waiting for it:
    /// its holders keep it for one read and one save (milliseconds).
    pub fn edit(path: &Path) -> Result<FileLock, String> {
        FileLock::take(path, ".edit.lock", true)
    }

    fn take(path: &Path, suffix: &str, wait: bool) -> Result<FileLock, String> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        let lock_path = path.with_file_name(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| {
                let dir = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                if e.kind() == io::ErrorKind::NotFound && !dir.is_dir() {
                    format!(
                        "accounts file {}: folder {} does not exist",
                        path.display(),
                        dir.display()
                    )
                } else {
                    format!(
                        "accounts file {}: cannot create its lock file {}: {e}",
                        path.display(),
                        lock_path.display()
                    )
                }
            })?;
        give_to_owner(&file, path, &lock_path.with_file_name("."));
        let how = if wait {
            libc::LOCK_EX
        } else {
            libc::LOCK_EX | libc::LOCK_NB
        };
        loop {
            // SAFETY: flock on a descriptor we own; it only takes a lock.
            if unsafe { libc::flock(file.as_raw_fd(), how) } == 0 {
                return Ok(FileLock { _file: file });
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(if e.kind() == io::ErrorKind::WouldBlock {
                format!(
                    "accounts file {} is in use by a running loopchat-server; stop it first",
                    path.display()
                )
            } else {
                format!(
                    "accounts file {}: cannot lock {}: {e}",
                    path.display(),
                    lock_path.display()
                )
            });
        }
    }
}

/// Root running an admin command (`--add-user` beside a service whose
/// `DynamicUser=` owns the folder): a file it creates belongs to the owner
/// of the file it replaces, or else of the folder, so the server can still
/// read and replace it. Anyone else cannot give files away; nothing to do.
fn give_to_owner(f: &File, replaces: &Path, dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid only reads the process's credentials.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let Ok(owner) = fs::metadata(replaces).or_else(|_| fs::metadata(dir)) else {
        return;
    };
    if let Err(e) = std::os::unix::fs::fchown(f, Some(owner.uid()), Some(owner.gid())) {
        log::warn!("cannot give {} to its owner: {e}", replaces.display());
    }
}

/// A budget of new accounts, per address and for the whole server, each
/// "`count` per `period`": `count` may be spent at once, and it refills
/// evenly, one every `period / count` (GCRA, the generic cell rate
/// algorithm: one instant per key, no list of past registrations). Pure:
/// the caller passes the time. A `count` of 0 means unlimited.
#[derive(Debug)]
pub struct NewAccountBudget {
    per_address: Rate,
    server: Rate,
    /// Per address key: when its budget is full again. Absent = full.
    addresses: HashMap<IpAddr, Instant>,
    server_full_at: Option<Instant>,
}

/// `count` per `period`; 0 = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

/// Whose budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Address,
    Server,
}

/// A refusal by [`NewAccountBudget::take`]: whose budget, its rate, and
/// how long until one more registration is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spent {
    pub scope: Scope,
    pub rate: Rate,
    pub retry_after: Duration,
}

/// `5 per hour`, `60 per minute`, as users and the log read it.
impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.period.as_secs() {
            3600 => write!(f, "{} per hour", self.count),
            60 => write!(f, "{} per minute", self.count),
            secs => write!(f, "{} per {secs} s", self.count),
        }
    }
}

impl Rate {
    /// When the budget that is full again at `full_at` can spend one more
    /// at `now`: `Ok(new full_at)`, or `Err(wait)`.
    fn take(&self, full_at: Option<Instant>, now: Instant) -> Result<Option<Instant>, Duration> {
        if self.count == 0 {
            return Ok(None);
        }
        let step = self.period / self.count;
        let next = full_at.map_or(now, |f| f.max(now)) + step;
        let owed = next - now;
        if owed > self.period {
            Err(owed - self.period)
        } else {
            Ok(Some(next))
        }
    }
}

impl NewAccountBudget {
    pub fn new(per_address: Rate, server: Rate) -> NewAccountBudget {
        NewAccountBudget {
            per_address,
            server,
            addresses: HashMap::new(),
            server_full_at: None,
        }
    }

    /// Spends one registration for address key `address` (the caller keys
    /// IPv6 by /64) at `now`, from both budgets, or from neither with the
    /// reason: the address's budget is reported first, as its wait is the
    /// one that address can do something about.
    pub fn take(&mut self, address: IpAddr, now: Instant) -> Result<(), Spent> {
        let spent = |scope, rate, retry_after| Spent {
            scope,
            rate,
            retry_after,
        };
        let mine = self
            .per_address
            .take(self.addresses.get(&address).copied(), now)
            .map_err(|wait| spent(Scope::Address, self.per_address, wait))?;
        let all = self
            .server
            .take(self.server_full_at, now)
            .map_err(|wait| spent(Scope::Server, self.server, wait))?;
        self.server_full_at = all;
        if let Some(full_at) = mine {
            if !self.addresses.contains_key(&address) {
                self.make_room(now);
            }
            self.addresses.insert(address, full_at);
        }
        Ok(())
    }

    /// Bounds the table at [`config::NEW_ACCOUNTS_TABLE`] entries: drops
    /// the addresses whose budget is full again, then if need be the half
    /// closest to full (a spray of addresses still meets the server-wide
    /// budget).
    fn make_room(&mut self, now: Instant) {
        if self.addresses.len() < config::NEW_ACCOUNTS_TABLE {
            return;
        }
        self.addresses.retain(|_, full_at| *full_at > now);
        if self.addresses.len() >= config::NEW_ACCOUNTS_TABLE {
            let mut all: Vec<Instant> = self.addresses.values().copied().collect();
            all.sort_unstable();
            let cut = all[all.len() / 2];
            self.addresses.retain(|_, full_at| *full_at > cut);
        }
    }
}

/// Parses the file's text; an error is `(line number, why)`.
fn parse(text: &str) -> Result<Vec<Entry>, (usize, String)> {
    let mut entries = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        // Without trailing CRs: `lines()` strips one before "\n" (and none
        // on a last line without "\n"), so a comment kept with one would
        // be saved as "...\r\n" and lose it at the next load: every save
        // would change the file (found by fuzz/accounts_file).
        let line = line.trim_end_matches('\r');
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            entries.push(Entry::Other(line.to_string()));
            continue;
        }
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        let [name, phc] = fields[..] else {
            return Err((
                n,
                format!(
                    "expected `NAME PHC` (2 fields), found {} field(s)",
                    fields.len()
                ),
            ));
        };
        protocol::validate_nick(name).map_err(|e| (n, format!("invalid name {name:?}: {e}")))?;
        check_phc(phc).map_err(|why| (n, format!("account {name}: {why}")))?;
        if let Some(first) = seen.insert(name.to_ascii_lowercase(), n) {
            return Err((n, format!("account {name} already defined on line {first}")));
        }
        entries.push(Entry::Account {
            name: name.to_string(),
            phc: phc.to_string(),
        });
    }
    Ok(entries)
}

/// Checks that `phc` is an argon2id PHC string with a salt and a hash.
fn check_phc(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|e| format!("not a PHC string ({e})"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "hash algorithm is {}, expected argon2id",
            parsed.algorithm
        ));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("the PHC string has no salt or no hash".into());
    }
    Ok(())
}

/// The hasher with our cost parameters (see config.rs, `ARGON2_*`).
fn hasher() -> Result<Argon2<'static>, String> {
    let params = Params::new(
        config::ARGON2_M_KIB,
        config::ARGON2_T,
        config::ARGON2_P,
        None,
    )
    .map_err(|e| format!("argon2 parameters: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with a fresh random salt (from the OS) into an
/// argon2id PHC string. Takes a few milliseconds on purpose.
pub fn hash_password(password: &str) -> Result<String, String> {
    let hash = hasher()?
        .hash_password(password.as_bytes())
        .map_err(|e| format!("hashing failed: {e}"))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `phc` (using the parameters
/// stored in `phc`, so older hashes keep working if the costs change).
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Checks a new password against the length rule.
pub fn check_new_password(password: &str) -> Result<(), String> {
    let min = config::MIN_PASSWORD_LEN;
    if password.chars().count() < min {
        return Err(format!("a password needs at least {min} characters"));
    }
    Ok(())
}

/// Runs one job against `store`: verify a known name, or register an
/// unknown one (hash, add in memory) if `may_register` allows it. A
/// registration is not saved here: the loop saves the registrations of a
/// burst together with [`Accounts::commit`], and acknowledges them only
/// after it. `may_register` is asked only once the password is long
/// enough, so only registrations that cost a hash spend the budget.
pub fn run_job(
    store: &mut Accounts,
    job: &AuthJob,
    may_register: impl FnOnce() -> Result<(), Spent>,
) -> AuthOutcome {
    if let Some((name, phc)) = store.lookup(&job.name) {
        return if verify_password(&job.password, phc) {
            AuthOutcome::LoggedIn {
                name: name.to_string(),
            }
        } else {
            AuthOutcome::WrongPassword
        };
    }
    if check_new_password(&job.password).is_err() {
        return AuthOutcome::TooShort {
            min: config::MIN_PASSWORD_LEN,
        };
    }
    if let Err(spent) = may_register() {
        return AuthOutcome::NoNewAccounts(spent);
    }
    let phc = match hash_password(&job.password) {
        Ok(phc) => phc,
        Err(e) => {
            log::error!("registering {}: {e}", job.name);
            return AuthOutcome::SaveFailed;
        }
    };
    if let Err(e) = store.add(&job.name, &phc) {
        log::error!("registering {}: {e}", job.name);
        return AuthOutcome::SaveFailed;
    }
    AuthOutcome::Registered {
        name: job.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "loopchat-accounts-unit-{}-{tag}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir.join("accounts.txt")
    }

    #[test]
    fn hash_and_verify() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=8192,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("correct horsf", &phc));
        assert!(!verify_password("x", "not a hash"));
        // Salted: the same password hashes differently each time.
        assert_ne!(phc, hash_password("correct horse").unwrap());
    }

    #[test]
    fn parse_keeps_comments_and_reports_line_numbers() {
        let phc = hash_password("password1").unwrap();
        let text = format!("# admins\n\nalice {phc}\n  # indented comment\nBob {phc}\n");
        let entries = parse(&text).unwrap();
        let a = Accounts::from_entries(Path::new("x"), entries, None);
        assert_eq!(a.len(), 2);
        assert_eq!(a.lookup("ALICE").map(|(n, _)| n), Some("alice"));
        assert_eq!(a.lookup("bob").map(|(n, _)| n), Some("Bob"));
        assert_eq!(a.render(), text);

        let bad = [
            (format!("# c\nalice {phc} extra\n"), 2, "2 fields"),
            ("alice\n".to_string(), 1, "found 1 field"),
            (format!("\n\nbad(name) {phc}\n"), 3, "invalid name"),
            ("alice plaintext\n".to_string(), 1, "not a PHC string"),
            (
                "alice $argon2i$v=19$m=8192,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo\n".to_string(),
                1,
                "expected argon2id",
            ),
            (
                format!("alice {phc}\nALICE {phc}\n"),
                2,
                "already defined on line 1",
            ),
        ];
        for (text, line, why) in bad {
            let Err((n, msg)) = parse(&text) else {
                panic!("{text:?} parsed");
            };
            assert_eq!(n, line, "{text:?}: {msg}");
            assert!(msg.contains(why), "{text:?}: {msg}");
        }
    }

    #[test]
    fn save_load_add_remove() {
        let path = temp_path("save");
        let mut a = Accounts::load(&path).unwrap();
        assert!(a.is_empty());
        let phc = hash_password("password1").unwrap();
        a.add("carol", &phc).unwrap();
        assert!(a.add("Carol", &phc).is_err());
        assert!(a.add("bad name", &phc).is_err());
        a.save_atomic().unwrap();
        let b = Accounts::load(&path).unwrap();
        assert_eq!(b.lookup("carol").map(|(_, p)| p), Some(phc.as_str()));
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# loopchat accounts"));
        let mut b = b;
        assert!(b.remove("CAROL"));
        assert!(!b.remove("carol"));
        b.save_atomic().unwrap();
        assert!(Accounts::load(&path).unwrap().is_empty());
        // No temporary file is left behind.
        let dir = path.parent().unwrap();
        assert_eq!(fs::read_dir(dir).unwrap().count(), 1);
        let err = Accounts::load(dir).unwrap_err();
        assert!(err.starts_with("accounts file "), "{err}");
    }

    /// A commit keeps what another process saved meanwhile (an admin
    /// command beside a running server), and a reload sees it only when
    /// the file changed.
    #[test]
    fn commit_merges_a_change_on_disk() {
        let path = temp_path("merge");
        let mut server = Accounts::load(&path).unwrap();
        server.save_atomic().unwrap();
        assert!(!server.changed_on_disk());
        assert_eq!(server.reload_if_changed(), Ok(None));
        let phc = hash_password("password1").unwrap();
        let mut admin = Accounts::load(&path).unwrap();
        admin.add("erin", &phc).unwrap();
        admin.save_atomic().unwrap();
        assert!(server.changed_on_disk());
        server.add("dave", &phc).unwrap();
        // Erin was added on disk meanwhile: that one is kept, this lost.
        server.add("Erin", &phc).unwrap();
        server.add("frank", &phc).unwrap();
        let names = ["dave", "Erin", "frank"].map(String::from);
        assert_eq!(server.commit(&names), Ok(vec!["Erin".to_string()]));
        let on_disk = Accounts::load(&path).unwrap();
        for name in ["dave", "erin", "frank"] {
            assert!(on_disk.lookup(name).is_some(), "{name}");
        }
        assert!(!server.changed_on_disk());
        let mut admin = Accounts::load(&path).unwrap();
        assert!(admin.remove("dave"));
        admin.save_atomic().unwrap();
        assert_eq!(server.reload_if_changed(), Ok(Some(2)));
        assert!(server.lookup("dave").is_none());
    }

    #[test]
    fn jobs_register_then_verify() {
        let path = temp_path("jobs");
        let mut a = Accounts::load(&path).unwrap();
        let job = |pw: &str| AuthJob {
            name: "Dave".into(),
            password: pw.into(),
        };
        assert_eq!(
            run_job(&mut a, &job("short"), || Ok(())),
            AuthOutcome::TooShort { min: 8 }
        );
        assert_eq!(
            run_job(&mut a, &job("long enough"), || Ok(())),
            AuthOutcome::Registered {
                name: "Dave".into()
            }
        );
        assert_eq!(
            run_job(&mut a, &job("wrong one"), || Ok(())),
            AuthOutcome::WrongPassword
        );
        let again = AuthJob {
            name: "dave".into(),
            password: "long enough".into(),
        };
        assert_eq!(
            run_job(&mut a, &again, || Ok(())),
            AuthOutcome::LoggedIn {
                name: "Dave".into()
            }
        );
        assert!(!format!("{again:?}").contains("long enough"));
        // A commit that fails leaves the user unregistered.
        let mut broken = Accounts::load(&path.parent().unwrap().join("no/such/dir/f")).unwrap();
        assert!(matches!(
            run_job(&mut broken, &job("long enough"), || Ok(())),
            AuthOutcome::Registered { .. }
        ));
        assert!(broken.commit(&["Dave".to_string()]).is_err());
        assert!(broken.lookup("dave").is_none());
        // A spent budget: nothing hashed, nothing added.
        let refusal = Spent {
            scope: Scope::Server,
            rate: Rate {
                count: 1,
                period: Duration::from_secs(60),
            },
            retry_after: Duration::from_secs(60),
        };
        let erin = AuthJob {
            name: "erin".into(),
            password: "long enough".into(),
        };
        assert_eq!(
            run_job(&mut a, &erin, || Err(refusal)),
            AuthOutcome::NoNewAccounts(refusal)
        );
        assert!(a.lookup("erin").is_none());
        // Logins and too-short passwords never ask the budget.
        let ask = || -> Result<(), Spent> { panic!("budget asked") };
        assert!(matches!(
            run_job(&mut a, &again, ask),
            AuthOutcome::LoggedIn { .. }
        ));
        let short = AuthJob {
            name: "frank".into(),
            password: "x".into(),
        };
        assert!(matches!(
            run_job(&mut a, &short, ask),
            AuthOutcome::TooShort { .. }
        ));
    }

    fn rate(count: u32, secs: u64) -> Rate {
        Rate {
            count,
            period: Duration::from_secs(secs),
        }
    }

    /// Per address: 3 an hour may go at once, then one every 20 min; other
    /// addresses have their own; a refusal spends nothing.
    #[test]
    fn budget_per_address() {
        let t0 = Instant::now();
        let mins = |m: u64| t0 + Duration::from_secs(60 * m);
        let mut b = NewAccountBudget::new(rate(3, 3600), rate(0, 60));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(b.take(a, t0), Ok(()));
        }
        let spent = b.take(a, mins(1)).unwrap_err();
        assert_eq!(spent.scope, Scope::Address);
        assert_eq!(spent.rate, rate(3, 3600));
        assert_eq!(spent.retry_after, Duration::from_secs(19 * 60));
        assert_eq!(b.take(other, mins(1)), Ok(()));
        // Refusals spend nothing: 20 min after the burst, one more.
        assert!(b.take(a, mins(19)).is_err());
        assert_eq!(b.take(a, mins(20)), Ok(()));
        assert!(b.take(a, mins(20)).is_err());
        // After a full hour of nothing, the whole budget is back.
        for _ in 0..3 {
            assert_eq!(b.take(a, mins(81)), Ok(()));
        }
        assert!(b.take(a, mins(81)).is_err());
    }

    /// Server-wide: counts every address; the address budget is reported
    /// first when both are spent; 0 means unlimited.
    #[test]
    fn budget_for_the_server() {
        let t0 = Instant::now();
        let mut b = NewAccountBudget::new(rate(1, 3600), rate(2, 60));
        let ip = |n: u8| IpAddr::from([198, 51, 100, n]);
        assert_eq!(b.take(ip(1), t0), Ok(()));
        assert_eq!(b.take(ip(2), t0), Ok(()));
        let spent = b.take(ip(3), t0).unwrap_err();
        assert_eq!(spent.scope, Scope::Server);
        assert_eq!(spent.retry_after, Duration::from_secs(30));
        // ip(3) was not charged for the refusal.
        assert_eq!(b.take(ip(3), t0 + Duration::from_secs(30)), Ok(()));
        assert_eq!(b.take(ip(1), t0).unwrap_err().scope, Scope::Address);

        let mut free = NewAccountBudget::new(rate(0, 3600), rate(0, 60));
        for n in 0..=255 {
            assert_eq!(free.take(ip(n), t0), Ok(()));
            assert_eq!(free.take(ip(n), t0), Ok(()));
        }
        assert!(free.addresses.is_empty());
    }

    /// The table of addresses stays bounded under a spray of addresses.
    #[test]
    fn budget_table_is_bounded() {
        let t0 = Instant::now();
        let mut b = NewAccountBudget::new(rate(5, 3600), rate(0, 60));
        for n in 0..3 * config::NEW_ACCOUNTS_TABLE as u32 {
            let at = t0 + Duration::from_millis(u64::from(n));
            assert_eq!(b.take(IpAddr::from(n.to_be_bytes()), at), Ok(()));
            assert!(b.addresses.len() <= config::NEW_ACCOUNTS_TABLE);
        }
    }
}
