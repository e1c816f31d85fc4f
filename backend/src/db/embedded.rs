//! A private PostgreSQL cluster made from the system's server programs, for when no
//! `DATABASE_URL` is configured.
//!
//! Layout under the given root (by default `./data/postgres`):
//! - `data/`  the cluster (`initdb` on first use),
//! - `run/`   its unix socket (no TCP port is ever opened),
//! - `postgres.log`, and `harbormaster.lock`, an advisory lock held by the process that owns the
//!   running postmaster.
//!
//! The server takes the lock for its whole life and stops the cluster when it shuts down. A
//! one-shot command (`migrate`, `user add`, …) uses the server's cluster when a server holds the
//! lock, and otherwise starts the cluster just for itself. A postmaster left running by a process
//! that crashed (the lock is free but `postmaster.pid` names a live process) is stopped cleanly
//! and started again under the new owner. When running as root, the cluster runs as the `postgres`
//! user, since PostgreSQL refuses to run as root.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use super::Role;

/// The database Harbormaster keeps its data in, inside the cluster.
pub const DATABASE_NAME: &str = "harbormaster";
const SUPERUSER: &str = "postgres";
const PORT: u16 = 5432;
/// The longest path a unix socket may have on Linux (`sun_path` less its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the embedded cluster could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("PostgreSQL server programs not found (looked in HARBORMASTER_PG_BIN, on PATH and in /usr/lib/postgresql/*/bin): install the PostgreSQL server (Debian: apt-get install postgresql) or set DATABASE_URL")]
    ProgramsNotFound,
    #[error("running as root, but there is no `postgres` user to run the embedded PostgreSQL as: install the PostgreSQL server package (it creates the user) or set DATABASE_URL")]
    NoPostgresUser,
    #[error("the postgres user cannot reach {path}: make it traversable (chmod o+x) or set HARBORMASTER_DATA_DIR to another place")]
    NotTraversable { path: PathBuf },
    #[error("the socket path {path} is {len} bytes, longer than the {MAX_SOCKET_PATH} a unix socket allows: set HARBORMASTER_DATA_DIR to a shorter path")]
    SocketPathTooLong { path: PathBuf, len: usize },
    #[error("another Harbormaster server is using the database in {path} (pid {pid}); stop it first or give this one another HARBORMASTER_DATA_DIR")]
    InUse { path: PathBuf, pid: String },
    #[error("{action} failed in {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("initdb failed for {path}: {output}")]
    Initdb { path: PathBuf, output: String },
    #[error(
        "the embedded PostgreSQL did not start within {secs} s; its log ({log}) ends with:\n{tail}"
    )]
    StartTimeout {
        secs: u64,
        log: PathBuf,
        tail: String,
    },
    #[error("the embedded PostgreSQL exited during start ({status}); its log ({log}) ends with:\n{tail}")]
    Exited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("cannot create the {DATABASE_NAME} database: {0}")]
    CreateDatabase(#[source] sqlx::Error),
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> EmbeddedError + 'a {
    move |source| EmbeddedError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The account the cluster runs as.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// A running (or shared) embedded cluster.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    root: PathBuf,
    socket_dir: PathBuf,
    /// The postmaster, when this process started it and must stop it.
    child: Option<tokio::process::Child>,
    /// Held while this process owns the cluster.
    _lock: Option<File>,
}

impl EmbeddedPostgres {
    /// Starts the cluster under `root` (creating it on first use), or joins the one a running
    /// server owns when `role` is [`Role::Command`].
    pub async fn start(
        root: &Path,
        bin_dir: Option<&Path>,
        role: Role,
    ) -> Result<Self, EmbeddedError> {
        fs::create_dir_all(root).map_err(io("creating the directory", root))?;
        let root = root
            .canonicalize()
            .map_err(io("resolving the directory", root))?;
        let socket_dir = root.join("run");
        let socket = socket_dir.join(format!(".s.PGSQL.{PORT}"));
        let len = socket.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(EmbeddedError::SocketPathTooLong { path: socket, len });
        }

        let lock_path = root.join("harbormaster.lock");
        let lock = match acquire_lock(&lock_path, role).await? {
            Some(lock) => lock,
            None => {
                // A server owns the cluster: use it as it is.
                let mut cluster = Self {
                    root: root.clone(),
                    socket_dir,
                    child: None,
                    _lock: None,
                };
                cluster.wait_ready(None).await?;
                return Ok(cluster);
            }
        };

        let bin = find_bin_dir(bin_dir).ok_or(EmbeddedError::ProgramsNotFound)?;
        let run_as = run_as()?;
        let pgdata = root.join("data");
        prepare_dirs(&root, &pgdata, &socket_dir, run_as)?;
        if !pgdata.join("PG_VERSION").exists() {
            initdb(&bin, &pgdata, run_as).await?;
        }
        stop_orphan(&pgdata).await;

        let log_path = root.join("postgres.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io("opening the log", &log_path))?;
        let log_err = log.try_clone().map_err(io("opening the log", &log_path))?;
        let mut command = std::process::Command::new(bin.join("postgres"));
        command
            .arg("-D")
            .arg(&pgdata)
            .arg("-k")
            .arg(&socket_dir)
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "unix_socket_permissions=0700",
            ])
            .args(["-p", &PORT.to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group: a Ctrl-C in the terminal reaches Harbormaster, which then
            // stops the cluster after the requests in flight have finished.
            .process_group(0);
        if let Some(run_as) = run_as {
            command.uid(run_as.uid).gid(run_as.gid);
        }
        let child = tokio::process::Command::from(command)
            .spawn()
            .map_err(io("starting postgres", &pgdata))?;
        tracing::info!(pid = child.id(), dir = %root.display(), "embedded PostgreSQL started");

        let mut cluster = Self {
            root,
            socket_dir,
            child: Some(child),
            _lock: Some(lock),
        };
        if let Err(err) = cluster.wait_ready(Some(&log_path)).await {
            cluster.stop_child().await;
            return Err(err);
        }
        cluster.create_database().await?;
        Ok(cluster)
    }

    /// Options that connect to Harbormaster's database in this cluster.
    pub fn connect_options(&self) -> PgConnectOptions {
        self.options_for(DATABASE_NAME)
    }

    fn options_for(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.socket_dir)
            .port(PORT)
            .username(SUPERUSER)
            .database(database)
            .log_statements(tracing::log::LevelFilter::Trace)
    }

    /// Where the cluster lives, for messages.
    pub fn describe(&self) -> String {
        format!(
            "embedded PostgreSQL (socket in {})",
            self.socket_dir.display()
        )
    }

    /// The directory the cluster lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this process started the postmaster (and so stops it).
    pub fn is_owner(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the postmaster if this process started it ("fast" shutdown: open sessions are
    /// ended, the data is checkpointed). A shared cluster is left running.
    pub async fn stop(mut self) {
        self.stop_child().await;
    }

    async fn stop_child(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            signal(pid as i32, libc::SIGINT);
        }
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) => tracing::info!(%status, "embedded PostgreSQL stopped"),
            Ok(Err(err)) => tracing::warn!(%err, "waiting for the embedded PostgreSQL failed"),
            Err(_) => {
                tracing::warn!("the embedded PostgreSQL did not stop in time; sending SIGQUIT");
                if let Some(pid) = child.id() {
                    signal(pid as i32, libc::SIGQUIT);
                }
                let _ = child.wait().await;
            }
        }
    }

    async fn wait_ready(&mut self, log: Option<&Path>) -> Result<(), EmbeddedError> {
        let started = Instant::now();
        let options = self.options_for("postgres");
        loop {
            if let Ok(conn) = options.connect().await {
                let _ = conn.close().await;
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    let log = log.map(Path::to_path_buf).unwrap_or_default();
                    return Err(EmbeddedError::Exited {
                        status: status.to_string(),
                        tail: tail(&log),
                        log,
                    });
                }
            }
            if started.elapsed() > START_TIMEOUT {
                let log = log
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| self.root.join("postgres.log"));
                return Err(EmbeddedError::StartTimeout {
                    secs: START_TIMEOUT.as_secs(),
                    tail: tail(&log),
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn create_database(&self) -> Result<(), EmbeddedError> {
        let mut conn = self
            .options_for("postgres")
            .connect()
            .await
            .map_err(EmbeddedError::CreateDatabase)?;
        let exists: bool =
            sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
                .bind(DATABASE_NAME)
                .fetch_one(&mut conn)
                .await
                .map_err(EmbeddedError::CreateDatabase)?;
        if !exists {
            sqlx::query(&format!("create database {DATABASE_NAME} encoding 'UTF8'"))
                .execute(&mut conn)
                .await
                .map_err(EmbeddedError::CreateDatabase)?;
        }
        let _ = conn.close().await;
        Ok(())
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        // Best effort when `stop` was not awaited (a panic, an early return): ask for a fast
        // shutdown so no postmaster outlives us. The next start handles one that does.
        if let Some(pid) = self.child.as_ref().and_then(tokio::process::Child::id) {
            signal(pid as i32, libc::SIGINT);
        }
    }
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, signal);
    }
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// Takes the owner lock. `Ok(None)` means a server holds it and this command should share.
async fn acquire_lock(path: &Path, role: Role) -> Result<Option<File>, EmbeddedError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io("opening the lock file", path))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // SAFETY: flock(2) on a descriptor we own.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if locked {
            file.set_len(0).map_err(io("writing the lock file", path))?;
            file.seek(SeekFrom::Start(0))
                .map_err(io("writing the lock file", path))?;
            write!(file, "{}", std::process::id()).map_err(io("writing the lock file", path))?;
            return Ok(Some(file));
        }
        if role == Role::Command {
            return Ok(None);
        }
        if Instant::now() > deadline {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(EmbeddedError::InUse {
                path: path.parent().unwrap_or(path).to_path_buf(),
                pid: pid.trim().to_string(),
            });
        }
        // A one-shot command may hold it for a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn find_bin_dir(configured: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = configured {
        return Some(dir.to_path_buf());
    }
    let has_programs = |dir: &Path| dir.join("postgres").is_file() && dir.join("initdb").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|dir| has_programs(dir)) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_programs(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// `Some(postgres user)` when running as root, `None` to run as ourselves.
fn run_as() -> Result<Option<RunAs>, EmbeddedError> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new(SUPERUSER).expect("no NUL in a constant");
    // SAFETY: getpwnam returns a pointer into static storage or NULL; we copy the ids at once.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        return Err(EmbeddedError::NoPostgresUser);
    }
    // SAFETY: checked non-null above.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok(Some(RunAs { uid, gid }))
}

fn prepare_dirs(
    root: &Path,
    pgdata: &Path,
    socket_dir: &Path,
    run_as: Option<RunAs>,
) -> Result<(), EmbeddedError> {
    for dir in [pgdata, socket_dir] {
        fs::create_dir_all(dir).map_err(io("creating the directory", dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io("setting permissions on", dir))?;
    }
    let Some(run_as) = run_as else {
        return Ok(());
    };
    for dir in [pgdata, socket_dir] {
        std::os::unix::fs::chown(dir, Some(run_as.uid), Some(run_as.gid))
            .map_err(io("handing the directory to the postgres user", dir))?;
    }
    // The postgres user must be able to walk down to its directories.
    let meta = fs::metadata(root).map_err(io("reading", root))?;
    if meta.mode() & 0o001 == 0 {
        fs::set_permissions(
            root,
            fs::Permissions::from_mode((meta.mode() & 0o7777) | 0o001),
        )
        .map_err(io("setting permissions on", root))?;
    }
    for ancestor in root.ancestors().skip(1) {
        let meta = fs::metadata(ancestor).map_err(io("reading", ancestor))?;
        let traversable = meta.mode() & 0o001 != 0
            || (meta.uid() == run_as.uid && meta.mode() & 0o100 != 0)
            || (meta.gid() == run_as.gid && meta.mode() & 0o010 != 0);
        if !traversable {
            return Err(EmbeddedError::NotTraversable {
                path: ancestor.to_path_buf(),
            });
        }
    }
    Ok(())
}

async fn initdb(bin: &Path, pgdata: &Path, run_as: Option<RunAs>) -> Result<(), EmbeddedError> {
    tracing::info!(dir = %pgdata.display(), "creating the embedded PostgreSQL cluster");
    let mut command = std::process::Command::new(bin.join("initdb"));
    command
        .arg("-D")
        .arg(pgdata)
        .args(["-U", SUPERUSER, "-E", "UTF8", "--no-locale"])
        // Only the unix socket, in a 0700 directory, is ever open: trust on it is limited to the
        // account that owns the directory.
        .args(["--auth-local=trust", "--auth-host=reject"])
        .stdin(Stdio::null())
        .current_dir(pgdata);
    if let Some(run_as) = run_as {
        command.uid(run_as.uid).gid(run_as.gid);
    }
    let output = tokio::process::Command::from(command)
        .output()
        .await
        .map_err(io("running initdb", pgdata))?;
    if !output.status.success() {
        return Err(EmbeddedError::Initdb {
            path: pgdata.to_path_buf(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    Ok(())
}

/// Stops a postmaster that an earlier owner left running when it crashed.
async fn stop_orphan(pgdata: &Path) {
    let Ok(text) = fs::read_to_string(pgdata.join("postmaster.pid")) else {
        return;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|line| line.trim().parse::<i32>().ok())
    else {
        return;
    };
    if !process_alive(pid) {
        return;
    }
    tracing::warn!(
        pid,
        "stopping a PostgreSQL left running by an earlier Harbormaster"
    );
    signal(pid, libc::SIGINT);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while process_alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if process_alive(pid) {
        signal(pid, libc::SIGQUIT);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
