//! One typed configuration, read once at start from command-line flags, the environment and an
//! optional `harbormaster.toml`, in that order of precedence.
//!
//! Every value is validated here, so a bad one stops the start with a message that names the
//! setting (flag, variable and file key) and says what is wrong with it. Secrets live in
//! [`Secret`], whose `Debug` and `Display` never show the value.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the default configuration file is looked for when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "harbormaster.toml";
/// The default local Docker engine socket.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// The service account token a pod gets; its presence means "running in a cluster".
pub const IN_CLUSTER_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// A value that must never reach a log line or a page.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret value itself; call only where it is handed to the system that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Secret)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A setting that could not be used, with the names a user may have set it under.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {message}")]
pub struct ConfigError {
    pub setting: String,
    pub message: String,
}

impl ConfigError {
    fn new(setting: &Setting, message: impl Into<String>) -> Self {
        Self {
            setting: setting.describe(),
            message: message.into(),
        }
    }
}

/// The names one setting goes by.
struct Setting {
    flag: Option<&'static str>,
    env: Option<&'static str>,
    key: &'static str,
}

impl Setting {
    const fn new(flag: Option<&'static str>, env: Option<&'static str>, key: &'static str) -> Self {
        Self { flag, env, key }
    }

    fn describe(&self) -> String {
        let mut names = Vec::new();
        if let Some(env) = self.env {
            names.push(env.to_string());
        }
        if let Some(flag) = self.flag {
            names.push(flag.to_string());
        }
        names.push(format!("`{}` in {DEFAULT_CONFIG_FILE}", self.key));
        names.join(" / ")
    }
}

const BIND: Setting = Setting::new(Some("--bind"), Some("HARBORMASTER_BIND"), "bind");
const DATABASE_URL: Setting =
    Setting::new(Some("--database-url"), Some("DATABASE_URL"), "database_url");
const DATA_DIR: Setting = Setting::new(
    Some("--data-dir"),
    Some("HARBORMASTER_DATA_DIR"),
    "data_dir",
);
const PUBLIC_URL: Setting = Setting::new(None, Some("HARBORMASTER_PUBLIC_URL"), "public_url");
const REQUEST_TIMEOUT: Setting = Setting::new(
    None,
    Some("HARBORMASTER_REQUEST_TIMEOUT_SECS"),
    "request_timeout_secs",
);
const BODY_LIMIT: Setting = Setting::new(
    None,
    Some("HARBORMASTER_BODY_LIMIT_BYTES"),
    "body_limit_bytes",
);
const DB_MAX_CONNECTIONS: Setting = Setting::new(
    None,
    Some("HARBORMASTER_DB_MAX_CONNECTIONS"),
    "db_max_connections",
);
const LOG_FORMAT: Setting = Setting::new(None, Some("HARBORMASTER_LOG_FORMAT"), "log_format");
const PG_BIN_DIR: Setting = Setting::new(None, Some("HARBORMASTER_PG_BIN"), "pg_bin_dir");
const DOCKER: Setting = Setting::new(None, Some("HARBORMASTER_DOCKER"), "docker.endpoints");
const DOCKER_TLS_CA: Setting =
    Setting::new(None, Some("HARBORMASTER_DOCKER_TLS_CA"), "docker.tls_ca");
const DOCKER_TLS_CERT: Setting = Setting::new(
    None,
    Some("HARBORMASTER_DOCKER_TLS_CERT"),
    "docker.tls_cert",
);
const DOCKER_TLS_KEY: Setting =
    Setting::new(None, Some("HARBORMASTER_DOCKER_TLS_KEY"), "docker.tls_key");
const DOCKER_RECONCILE: Setting = Setting::new(
    None,
    Some("HARBORMASTER_DOCKER_RECONCILE_SECS"),
    "docker.reconcile_secs",
);
const RETIRE_GRACE: Setting = Setting::new(
    None,
    Some("HARBORMASTER_RETIRE_GRACE_SECS"),
    "retire_grace_secs",
);
const DRIFT_INTERVAL: Setting = Setting::new(
    None,
    Some("HARBORMASTER_DRIFT_INTERVAL_SECS"),
    "runtime.drift_interval_secs",
);
const DRIFT_CONCURRENCY: Setting = Setting::new(
    None,
    Some("HARBORMASTER_DRIFT_CONCURRENCY"),
    "runtime.drift_concurrency",
);
const BASELINE_WINDOW: Setting = Setting::new(
    None,
    Some("HARBORMASTER_BASELINE_WINDOW_SECS"),
    "runtime.baseline_window_secs",
);
const RESTART_THRESHOLD: Setting = Setting::new(
    None,
    Some("HARBORMASTER_RESTART_LOOP_COUNT"),
    "runtime.restart_loop_count",
);
const RESTART_WINDOW: Setting = Setting::new(
    None,
    Some("HARBORMASTER_RESTART_LOOP_WINDOW_SECS"),
    "runtime.restart_loop_window_secs",
);
const LEASE_TTL: Setting =
    Setting::new(None, Some("HARBORMASTER_LEASE_TTL_SECS"), "lease_ttl_secs");
const KUBECONFIG: Setting = Setting::new(
    None,
    Some("HARBORMASTER_KUBECONFIG"),
    "kubernetes.kubeconfig",
);
const KUBE_CONTEXTS: Setting = Setting::new(
    None,
    Some("HARBORMASTER_KUBE_CONTEXTS"),
    "kubernetes.contexts",
);
const SESSION_IDLE: Setting = Setting::new(
    None,
    Some("HARBORMASTER_SESSION_IDLE_MINUTES"),
    "auth.session_idle_minutes",
);
const SESSION_ABSOLUTE: Setting = Setting::new(
    None,
    Some("HARBORMASTER_SESSION_ABSOLUTE_HOURS"),
    "auth.session_absolute_hours",
);
const TRUSTED_PROXIES: Setting = Setting::new(
    None,
    Some("HARBORMASTER_TRUSTED_PROXIES"),
    "auth.trusted_proxies",
);
const NOTIFY_DIGEST: Setting = Setting::new(
    None,
    Some("HARBORMASTER_NOTIFY_DIGEST_MINUTES"),
    "notifications.digest_minutes",
);
const NOTIFY_MAX_ATTEMPTS: Setting = Setting::new(
    None,
    Some("HARBORMASTER_NOTIFY_MAX_ATTEMPTS"),
    "notifications.max_attempts",
);
const NOTIFY_RETRY: Setting = Setting::new(
    None,
    Some("HARBORMASTER_NOTIFY_RETRY_SECS"),
    "notifications.retry_secs",
);
const NOTIFY_TIMEOUT: Setting = Setting::new(
    None,
    Some("HARBORMASTER_NOTIFY_TIMEOUT_SECS"),
    "notifications.timeout_secs",
);
const NOTIFY_CHANNELS: Setting = Setting::new(None, None, "notifications.channels");
const NOTIFY_ROUTES: Setting = Setting::new(None, None, "notifications.routes");
const OWNERSHIP_TEAMS: Setting = Setting::new(None, None, "ownership.teams");
const OWNERSHIP_RULES: Setting = Setting::new(None, None, "ownership.rules");
const OWNERSHIP_LABEL_KEYS: Setting = Setting::new(
    None,
    Some("HARBORMASTER_OWNERSHIP_LABEL_KEYS"),
    "ownership.label_keys",
);
const ALLOWED_REGISTRIES: Setting = Setting::new(
    None,
    Some("HARBORMASTER_ALLOWED_REGISTRIES"),
    "images.allowed_registries",
);
const IMAGE_MAX_AGE: Setting = Setting::new(
    None,
    Some("HARBORMASTER_IMAGE_MAX_AGE_DAYS"),
    "images.max_age_days",
);
const BUILD_REPORT_LIMIT: Setting = Setting::new(
    None,
    Some("HARBORMASTER_BUILD_REPORT_LIMIT_BYTES"),
    "images.build_report_limit_bytes",
);
const REVIEW_IMAGE_MAX_AGE: Setting = Setting::new(
    None,
    Some("HARBORMASTER_REVIEW_IMAGE_MAX_AGE_DAYS"),
    "reviews.image_max_age_days",
);
const CONFIG_FILE: Setting = Setting::new(Some("--config"), Some("HARBORMASTER_CONFIG"), "-");

/// Settings as given on the command line or in the environment (clap reads both), before
/// validation. `None` means "not given here".
#[derive(Debug, Default, Clone, clap::Args)]
pub struct RawSettings {
    /// Configuration file (TOML). Default: ./harbormaster.toml when it exists.
    #[arg(long, env = "HARBORMASTER_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// PostgreSQL URL. Unset: an embedded private cluster under the data directory.
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Directory for the embedded database and other state.
    #[arg(long, env = "HARBORMASTER_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Address the console and API listen on.
    #[arg(
        long,
        env = "HARBORMASTER_BIND",
        global = true,
        value_name = "HOST:PORT"
    )]
    pub bind: Option<String>,
}

/// The optional configuration file. Unknown keys are refused so that a typo is not silently
/// ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub bind: Option<String>,
    pub database_url: Option<String>,
    pub data_dir: Option<String>,
    pub public_url: Option<String>,
    pub request_timeout_secs: Option<u64>,
    pub body_limit_bytes: Option<u64>,
    pub db_max_connections: Option<u32>,
    pub log_format: Option<String>,
    pub pg_bin_dir: Option<String>,
    pub retire_grace_secs: Option<u64>,
    pub lease_ttl_secs: Option<u64>,
    #[serde(default)]
    pub docker: FileDocker,
    #[serde(default)]
    pub kubernetes: FileKubernetes,
    #[serde(default)]
    pub auth: FileAuth,
    #[serde(default)]
    pub runtime: FileRuntime,
    #[serde(default)]
    pub notifications: FileNotifications,
    #[serde(default)]
    pub ownership: FileOwnership,
    #[serde(default)]
    pub images: FileImages,
    #[serde(default)]
    pub reviews: FileReviews,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRuntime {
    pub drift_interval_secs: Option<u64>,
    pub drift_concurrency: Option<u64>,
    pub baseline_window_secs: Option<u64>,
    pub restart_loop_count: Option<u64>,
    pub restart_loop_window_secs: Option<u64>,
}

/// `[notifications]`: delivery settings, and channels and routes kept in the file (their secrets
/// never enter the database).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileNotifications {
    pub digest_minutes: Option<u64>,
    pub max_attempts: Option<u64>,
    pub retry_secs: Option<u64>,
    pub timeout_secs: Option<u64>,
    #[serde(default)]
    pub channels: Vec<crate::notify::ChannelInput>,
    #[serde(default)]
    pub routes: Vec<crate::notify::RouteInput>,
}

/// Notification delivery: digest window, retries, timeouts, and the configured channels and
/// routes.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// At most one message per route and channel per this window (default 10 minutes).
    pub digest: Duration,
    /// Attempts before a message is dead (default 8).
    pub max_attempts: u32,
    /// The first retry's delay, doubled each time (default 30 s).
    pub retry_base: Duration,
    /// Each delivery's timeout (default 10 s).
    pub timeout: Duration,
    /// How often the planner and the worker look for work when idle (5 s).
    pub interval: Duration,
    /// Rows read per source per planning round (5,000).
    pub batch: i64,
    pub channels: Vec<crate::notify::ChannelInput>,
    pub routes: Vec<crate::notify::RouteInput>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOwnership {
    pub label_keys: Option<Vec<String>>,
    /// Teams kept in the file (created at start when missing).
    #[serde(default)]
    pub teams: Vec<ConfiguredTeam>,
    /// Ownership rules kept in the file: applied at every start, beside the console's.
    #[serde(default)]
    pub rules: Vec<ConfiguredRule>,
}

/// `[[ownership.teams]]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredTeam {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub contact: String,
}

/// `[[ownership.rules]]`: as the API's rules, with the team and source by name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredRule {
    /// workload_label, namespace_label, image_prefix or source_default.
    pub kind: String,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
    /// The source's name, for `source_default`.
    pub source: Option<String>,
    /// One layer; none: every layer.
    pub layer: Option<String>,
    pub team: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileImages {
    pub allowed_registries: Option<Vec<String>>,
    pub max_age_days: Option<u64>,
    pub build_report_limit_bytes: Option<u64>,
}

/// The image controls and the build-report endpoint.
#[derive(Debug, Clone)]
pub struct ImagesConfig {
    /// Registries (`host` or `host/path-prefix`) images may be stored in and pulled from; `None`
    /// when no allow-list is configured (the controls then say UNKNOWN). The same list as
    /// `harbormaster scan --allow-registry`.
    pub allowed_registries: Option<Vec<String>>,
    /// An image older than this fails `update.image_stale` (default 90).
    pub max_age_days: u32,
    /// The largest build report accepted (with its scan), default 16 MiB.
    pub build_report_limit: usize,
    /// Whether the server judges the image controls of new and changed workloads in the
    /// background (always, except in tests, which judge them when they choose).
    pub background_sweep: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileReviews {
    pub image_max_age_days: Option<u64>,
    #[serde(default)]
    pub schedules: Vec<FileReviewSchedule>,
}

/// `[[reviews.schedules]]`: `cron = "0 6 * * MON"`, optional `team` and `formats`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileReviewSchedule {
    pub cron: String,
    pub team: Option<String>,
    #[serde(default)]
    pub formats: Vec<String>,
}

/// Periodic reviews.
#[derive(Debug, Clone)]
pub struct ReviewsConfig {
    /// Images built longer ago than this are a lifecycle anomaly in a review (default: the
    /// image controls' `images.max_age_days`, 90).
    pub image_max_age_days: u64,
    /// When reviews are generated on their own.
    pub schedules: Vec<crate::review::schedule::Schedule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuth {
    pub session_idle_minutes: Option<u64>,
    pub session_absolute_hours: Option<u64>,
    pub trusted_proxies: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDocker {
    pub endpoints: Option<Vec<String>>,
    pub tls_ca: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub reconcile_secs: Option<u64>,
}

/// TLS client files for a `tcp://` Docker engine: the CA that signed the engine's certificate and
/// the client certificate and key the engine expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl DockerTls {
    /// The Docker CLI's layout: `ca.pem`, `cert.pem` and `key.pem` in one directory.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    fn missing(&self) -> Option<&Path> {
        [&self.ca, &self.cert, &self.key]
            .into_iter()
            .find(|path| !path.is_file())
            .map(PathBuf::as_path)
    }
}

/// A Docker endpoint as configured: `unix:///path`, or `tcp://HOST:PORT` with an optional
/// `?tls=/dir` holding `ca.pem`, `cert.pem` and `key.pem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerEndpoint {
    /// The address without the query (also the source's name).
    pub address: String,
    /// TLS client files; `None` for a unix socket or a plain-HTTP tcp endpoint.
    pub tls: Option<DockerTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileKubernetes {
    pub kubeconfig: Option<String>,
    pub contexts: Option<Vec<String>>,
}

/// Where the database lives.
#[derive(Debug, Clone)]
pub enum DatabaseConfig {
    /// An external PostgreSQL server.
    Url(Secret<String>),
    /// A private cluster under `<data_dir>/postgres`, started and stopped by Harbormaster.
    Embedded,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Sign-in sessions and how the client address is found.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// A session unused for this long is over (default 8 h).
    pub session_idle: Duration,
    /// A session is over this long after sign-in, however busy (default 7 days).
    pub session_absolute: Duration,
    /// Reverse proxies whose `X-Forwarded-For` is believed. Empty (the default): the header is
    /// ignored and the client address is the TCP peer's, since anyone can send the header.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub database: DatabaseConfig,
    pub data_dir: PathBuf,
    pub public_url: String,
    pub request_timeout: Duration,
    pub body_limit: usize,
    pub db_max_connections: u32,
    pub log_format: LogFormat,
    pub pg_bin_dir: Option<PathBuf>,
    /// Docker engine endpoints (`unix://…`, `tcp://…`); empty when none is configured and the
    /// local socket does not exist.
    pub docker_endpoints: Vec<String>,
    /// TLS client files applied to every `tcp://` endpoint without its own `?tls=`.
    pub docker_tls: Option<DockerTls>,
    /// How often each Docker engine is fully re-listed besides its event stream.
    pub docker_reconcile_interval: Duration,
    /// How long a workload with no instance left waits before it is retired.
    pub retire_grace: Duration,
    /// How long a replica holds a source (or a singleton job) without renewing before another
    /// replica may take it over; renewed every third of it.
    pub lease_ttl: Duration,
    /// The kubeconfig to read clusters from: the configured one, else `~/.kube/config` when it
    /// exists (and Harbormaster does not run in a pod).
    pub kubeconfig: Option<PathBuf>,
    pub kube_contexts: Vec<String>,
    /// Running in a pod with a service account and no kubeconfig configured: collect the pod's
    /// own cluster.
    pub kube_in_cluster: bool,
    pub auth: AuthConfig,
    /// Run-stage monitoring: the drift sampler, process baselines, restart loops.
    pub runtime: crate::runtime::Settings,
    pub notifications: NotifyConfig,
    /// The workload / namespace label and annotation keys whose value names the owning team.
    pub ownership_label_keys: Vec<String>,
    /// Teams and ownership rules from the file.
    pub ownership_teams: Vec<ConfiguredTeam>,
    pub ownership_rules: Vec<ConfiguredRule>,
    pub images: ImagesConfig,
    pub reviews: ReviewsConfig,
    /// Where the values came from, for the overview page.
    pub config_file: Option<PathBuf>,
}

/// Reads an environment variable that clap does not know about; empty counts as unset.
fn env_var(setting: &Setting) -> Option<String> {
    setting
        .env
        .and_then(|name| std::env::var(name).ok())
        .filter(|value| !value.trim().is_empty())
}

impl Config {
    /// Validates the settings given on the command line / environment against the optional file.
    pub fn load(raw: &RawSettings) -> Result<Self, ConfigError> {
        let (file, config_file) = load_file(raw.config.as_deref())?;
        Self::from_parts(raw, file, config_file, &|setting| env_var(setting))
    }

    fn from_parts(
        raw: &RawSettings,
        file: FileConfig,
        config_file: Option<PathBuf>,
        env: &dyn Fn(&Setting) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let bind_text = first(&raw.bind, file.bind).unwrap_or_else(|| "127.0.0.1:8080".into());
        let bind: SocketAddr = bind_text.trim().parse().map_err(|_| {
            ConfigError::new(
                &BIND,
                format!("'{bind_text}' is not a socket address; expected HOST:PORT such as 127.0.0.1:8080"),
            )
        })?;

        let database = match first(&raw.database_url, file.database_url) {
            Some(url) => DatabaseConfig::Url(Secret::new(validate_database_url(&url)?)),
            None => DatabaseConfig::Embedded,
        };

        let data_dir_text = first(&raw.data_dir, file.data_dir).unwrap_or_else(|| "./data".into());
        if data_dir_text.trim().is_empty() {
            return Err(ConfigError::new(&DATA_DIR, "must not be empty"));
        }
        let data_dir = PathBuf::from(data_dir_text.trim());

        let public_url = match env(&PUBLIC_URL).or(file.public_url) {
            Some(url) => validate_public_url(&url)?,
            None => format!("http://{bind}"),
        };

        let request_timeout = Duration::from_secs(number(
            &REQUEST_TIMEOUT,
            env(&REQUEST_TIMEOUT),
            file.request_timeout_secs,
            30,
            1..=3600,
        )?);
        let body_limit = number(
            &BODY_LIMIT,
            env(&BODY_LIMIT),
            file.body_limit_bytes,
            2 * 1024 * 1024,
            1024..=1024 * 1024 * 1024,
        )? as usize;
        let db_max_connections = number(
            &DB_MAX_CONNECTIONS,
            env(&DB_MAX_CONNECTIONS),
            file.db_max_connections.map(u64::from),
            10,
            1..=1000,
        )? as u32;

        let log_format = match env(&LOG_FORMAT)
            .or(file.log_format)
            .as_deref()
            .map(str::trim)
        {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    &LOG_FORMAT,
                    format!("'{other}' is not a log format; expected text or json"),
                ))
            }
        };

        let pg_bin_dir = env(&PG_BIN_DIR).or(file.pg_bin_dir).map(PathBuf::from);
        if let Some(dir) = &pg_bin_dir {
            if !dir.join("postgres").is_file() {
                return Err(ConfigError::new(
                    &PG_BIN_DIR,
                    format!("{} holds no `postgres` program", dir.display()),
                ));
            }
        }

        let docker_endpoints = match env(&DOCKER) {
            Some(list) => split_list(&list),
            None => file.docker.endpoints.unwrap_or_else(|| {
                if Path::new(DEFAULT_DOCKER_SOCKET).exists() {
                    vec![format!("unix://{DEFAULT_DOCKER_SOCKET}")]
                } else {
                    Vec::new()
                }
            }),
        };
        for endpoint in &docker_endpoints {
            validate_docker_endpoint(endpoint)?;
        }
        let tls_parts = [
            (&DOCKER_TLS_CA, env(&DOCKER_TLS_CA).or(file.docker.tls_ca)),
            (
                &DOCKER_TLS_CERT,
                env(&DOCKER_TLS_CERT).or(file.docker.tls_cert),
            ),
            (
                &DOCKER_TLS_KEY,
                env(&DOCKER_TLS_KEY).or(file.docker.tls_key),
            ),
        ];
        let docker_tls = if tls_parts.iter().all(|(_, value)| value.is_none()) {
            None
        } else {
            let mut paths = Vec::new();
            for (setting, value) in &tls_parts {
                let Some(value) = value else {
                    return Err(ConfigError::new(
                        setting,
                        "is missing: the Docker TLS CA, certificate and key are set together",
                    ));
                };
                let path = PathBuf::from(value.trim());
                if !path.is_file() {
                    return Err(ConfigError::new(
                        setting,
                        format!("{} does not exist or is not a file", path.display()),
                    ));
                }
                paths.push(path);
            }
            let key = paths.pop().expect("three paths");
            let cert = paths.pop().expect("three paths");
            let ca = paths.pop().expect("three paths");
            Some(DockerTls { ca, cert, key })
        };
        let docker_reconcile_interval = Duration::from_secs(number(
            &DOCKER_RECONCILE,
            env(&DOCKER_RECONCILE),
            file.docker.reconcile_secs,
            300,
            5..=86_400,
        )?);
        let retire_grace = Duration::from_secs(number(
            &RETIRE_GRACE,
            env(&RETIRE_GRACE),
            file.retire_grace_secs,
            600,
            0..=30 * 86_400,
        )?);
        let lease_ttl = Duration::from_secs(number(
            &LEASE_TTL,
            env(&LEASE_TTL),
            file.lease_ttl_secs,
            15,
            2..=600,
        )?);

        let kubeconfig = env(&KUBECONFIG)
            .or(file.kubernetes.kubeconfig)
            .map(PathBuf::from);
        if let Some(path) = &kubeconfig {
            if !path.is_file() {
                return Err(ConfigError::new(
                    &KUBECONFIG,
                    format!("{} does not exist or is not a file", path.display()),
                ));
            }
        }
        let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
            && Path::new(IN_CLUSTER_TOKEN).is_file();
        let kube_in_cluster = kubeconfig.is_none() && in_pod;
        let kubeconfig = kubeconfig.or_else(|| {
            let default = PathBuf::from(std::env::var_os("HOME")?).join(".kube/config");
            (!in_pod && default.is_file()).then_some(default)
        });
        let kube_contexts = match env(&KUBE_CONTEXTS) {
            Some(list) => split_list(&list),
            None => file.kubernetes.contexts.unwrap_or_default(),
        };

        let auth = AuthConfig {
            session_idle: Duration::from_secs(
                60 * number(
                    &SESSION_IDLE,
                    env(&SESSION_IDLE),
                    file.auth.session_idle_minutes,
                    8 * 60,
                    1..=30 * 24 * 60,
                )?,
            ),
            session_absolute: Duration::from_secs(
                3600 * number(
                    &SESSION_ABSOLUTE,
                    env(&SESSION_ABSOLUTE),
                    file.auth.session_absolute_hours,
                    7 * 24,
                    1..=365 * 24,
                )?,
            ),
            trusted_proxies: match env(&TRUSTED_PROXIES) {
                Some(list) => split_list(&list),
                None => file.auth.trusted_proxies.unwrap_or_default(),
            }
            .iter()
            .map(|text| parse_proxy(text))
            .collect::<Result<_, _>>()?,
        };

        let runtime = crate::runtime::Settings {
            drift_interval: Duration::from_secs(number(
                &DRIFT_INTERVAL,
                env(&DRIFT_INTERVAL),
                file.runtime.drift_interval_secs,
                300,
                5..=86_400,
            )?),
            drift_concurrency: number(
                &DRIFT_CONCURRENCY,
                env(&DRIFT_CONCURRENCY),
                file.runtime.drift_concurrency,
                8,
                1..=256,
            )? as usize,
            baseline_window: Duration::from_secs(number(
                &BASELINE_WINDOW,
                env(&BASELINE_WINDOW),
                file.runtime.baseline_window_secs,
                3600,
                0..=30 * 86_400,
            )?),
            restart_threshold: number(
                &RESTART_THRESHOLD,
                env(&RESTART_THRESHOLD),
                file.runtime.restart_loop_count,
                3,
                1..=1000,
            )? as u32,
            restart_window: Duration::from_secs(number(
                &RESTART_WINDOW,
                env(&RESTART_WINDOW),
                file.runtime.restart_loop_window_secs,
                600,
                10..=7 * 86_400,
            )?),
        };
        let notifications = notify_config(file.notifications, env)?;
        let ownership_label_keys = match env(&OWNERSHIP_LABEL_KEYS) {
            Some(list) => split_list(&list),
            None => file.ownership.label_keys.unwrap_or_else(|| {
                crate::ownership::DEFAULT_LABEL_KEYS
                    .iter()
                    .map(|key| key.to_string())
                    .collect()
            }),
        };
        if let Some(bad) = ownership_label_keys.iter().find(|key| {
            key.trim().is_empty() || key.len() > 253 || key.contains(char::is_whitespace)
        }) {
            return Err(ConfigError::new(
                &OWNERSHIP_LABEL_KEYS,
                format!("'{bad}' is not a label key"),
            ));
        }
        for team in &file.ownership.teams {
            if team.name.trim().is_empty()
                || !crate::ownership::TEAM_KINDS.contains(&team.kind.as_str())
            {
                return Err(ConfigError::new(
                    &OWNERSHIP_TEAMS,
                    format!(
                        "team '{}': needs a name and a kind, one of {}",
                        team.name,
                        crate::ownership::TEAM_KINDS.join(", ")
                    ),
                ));
            }
        }
        for (n, rule) in file.ownership.rules.iter().enumerate() {
            let problem = if crate::ownership::RuleKind::parse(&rule.kind).is_none() {
                Some(format!(
                    "kind '{}' is not one of workload_label, namespace_label, image_prefix, source_default",
                    rule.kind
                ))
            } else if rule
                .layer
                .as_deref()
                .is_some_and(|layer| !crate::ownership::LAYERS.contains(&layer))
            {
                Some(format!(
                    "layer '{}' is not one of {}",
                    rule.layer.as_deref().unwrap_or_default(),
                    crate::ownership::LAYERS.join(", ")
                ))
            } else if rule.team.trim().is_empty() {
                Some("names no team".to_string())
            } else if rule.kind == "source_default" && rule.source.is_none() {
                Some("a source_default rule names its source".to_string())
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(ConfigError::new(
                    &OWNERSHIP_RULES,
                    format!("rule {}: {problem}", n + 1),
                ));
            }
        }
        let ownership_teams = file.ownership.teams;
        let ownership_rules = file.ownership.rules;
        let images = ImagesConfig {
            allowed_registries: match env(&ALLOWED_REGISTRIES) {
                Some(list) => Some(split_list(&list)),
                None => file.images.allowed_registries,
            }
            .map(|list| {
                list.into_iter()
                    .map(|entry| entry.trim().trim_end_matches('/').to_string())
                    .filter(|entry| !entry.is_empty())
                    .collect::<Vec<_>>()
            }),
            max_age_days: number(
                &IMAGE_MAX_AGE,
                env(&IMAGE_MAX_AGE),
                file.images.max_age_days,
                90,
                1..=3650,
            )? as u32,
            build_report_limit: number(
                &BUILD_REPORT_LIMIT,
                env(&BUILD_REPORT_LIMIT),
                file.images.build_report_limit_bytes,
                16 * 1024 * 1024,
                1024..=256 * 1024 * 1024,
            )? as usize,
            background_sweep: true,
        };
        if let Some(entry) = images
            .allowed_registries
            .iter()
            .flatten()
            .find(|entry| entry.contains(char::is_whitespace) || entry.contains("://"))
        {
            return Err(ConfigError::new(
                &ALLOWED_REGISTRIES,
                format!("'{entry}' is not a registry host; expected HOST[:PORT][/PATH] such as registry.example.com/team"),
            ));
        }
        let reviews = ReviewsConfig {
            image_max_age_days: number(
                &REVIEW_IMAGE_MAX_AGE,
                env(&REVIEW_IMAGE_MAX_AGE),
                file.reviews.image_max_age_days,
                u64::from(images.max_age_days),
                1..=36_500,
            )?,
            schedules: file
                .reviews
                .schedules
                .into_iter()
                .enumerate()
                .map(|(index, schedule)| {
                    crate::review::schedule::Schedule::parse(
                        &schedule.cron,
                        schedule.team,
                        &schedule.formats,
                    )
                    .map_err(|message| ConfigError {
                        setting: format!("`reviews.schedules[{index}]` in {DEFAULT_CONFIG_FILE}"),
                        message,
                    })
                })
                .collect::<Result<_, _>>()?,
        };

        Ok(Self {
            bind,
            database,
            data_dir,
            public_url,
            request_timeout,
            body_limit,
            db_max_connections,
            log_format,
            pg_bin_dir,
            docker_endpoints,
            docker_tls,
            docker_reconcile_interval,
            retire_grace,
            lease_ttl,
            kubeconfig,
            kube_contexts,
            kube_in_cluster,
            auth,
            runtime,
            notifications,
            ownership_label_keys,
            ownership_teams,
            ownership_rules,
            images,
            reviews,
            config_file,
        })
    }

    /// The Docker endpoints with their TLS files resolved (`?tls=` wins over the global files).
    pub fn docker_endpoints(&self) -> Vec<DockerEndpoint> {
        self.docker_endpoints
            .iter()
            .map(|endpoint| parse_docker_endpoint(endpoint, self.docker_tls.as_ref()))
            .collect()
    }

    /// The database location with any password removed, for logs and pages.
    pub fn database_display(&self) -> String {
        match &self.database {
            DatabaseConfig::Url(url) => redact_url(url.expose()),
            DatabaseConfig::Embedded => format!(
                "embedded PostgreSQL under {}",
                self.data_dir.join("postgres").display()
            ),
        }
    }

    /// Whether the console is served over TLS, so cookies must be `Secure`.
    pub fn serves_tls(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// A configuration for tests: embedded database settings off, no collectors, everything else
    /// default.
    pub fn for_tests(database_url: &str) -> Self {
        let raw = RawSettings {
            database_url: Some(database_url.to_string()),
            bind: Some("127.0.0.1:0".into()),
            data_dir: Some(std::env::temp_dir().to_string_lossy().into_owned()),
            config: None,
        };
        let mut config = Self::from_parts(&raw, FileConfig::default(), None, &|_| None)
            .expect("the test configuration is valid");
        // Tests that want a collector configure its endpoints themselves.
        config.docker_endpoints.clear();
        // Tests choose their clusters; the developer's own ~/.kube/config is never collected.
        config.kubeconfig = None;
        config.kube_in_cluster = false;
        // Tests judge the image controls when they choose (`supply::store::sweep_once`).
        config.images.background_sweep = false;
        config
    }
}

fn notify_config(
    file: FileNotifications,
    env: &dyn Fn(&Setting) -> Option<String>,
) -> Result<NotifyConfig, ConfigError> {
    for channel in &file.channels {
        channel.validate().map_err(|message| {
            ConfigError::new(
                &NOTIFY_CHANNELS,
                format!("channel '{}': {message}", channel.name),
            )
        })?;
    }
    for route in &file.routes {
        route.validate().map_err(|message| {
            ConfigError::new(&NOTIFY_ROUTES, format!("route '{}': {message}", route.name))
        })?;
    }
    Ok(NotifyConfig {
        digest: Duration::from_secs(
            60 * number(
                &NOTIFY_DIGEST,
                env(&NOTIFY_DIGEST),
                file.digest_minutes,
                10,
                0..=24 * 60,
            )?,
        ),
        max_attempts: number(
            &NOTIFY_MAX_ATTEMPTS,
            env(&NOTIFY_MAX_ATTEMPTS),
            file.max_attempts,
            8,
            1..=50,
        )? as u32,
        retry_base: Duration::from_secs(number(
            &NOTIFY_RETRY,
            env(&NOTIFY_RETRY),
            file.retry_secs,
            30,
            1..=3600,
        )?),
        timeout: Duration::from_secs(number(
            &NOTIFY_TIMEOUT,
            env(&NOTIFY_TIMEOUT),
            file.timeout_secs,
            10,
            1..=300,
        )?),
        interval: Duration::from_secs(5),
        batch: 5000,
        channels: file.channels,
        routes: file.routes,
    })
}

fn first(given: &Option<String>, file: Option<String>) -> Option<String> {
    given
        .clone()
        .filter(|value| !value.trim().is_empty())
        .or(file)
}

fn number(
    setting: &Setting,
    env: Option<String>,
    file: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let value = match env {
        Some(text) => text
            .trim()
            .parse::<u64>()
            .map_err(|_| ConfigError::new(setting, format!("'{text}' is not a whole number")))?,
        None => file.unwrap_or(default),
    };
    if !range.contains(&value) {
        return Err(ConfigError::new(
            setting,
            format!(
                "{value} is out of range; expected {} to {}",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(value)
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(String::from)
        .collect()
}

fn load_file(explicit: Option<&Path>) -> Result<(FileConfig, Option<PathBuf>), ConfigError> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => {
            let default = PathBuf::from(DEFAULT_CONFIG_FILE);
            if !default.exists() {
                return Ok((FileConfig::default(), None));
            }
            default
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|err| {
        ConfigError::new(
            &CONFIG_FILE,
            format!("cannot read {}: {err}", path.display()),
        )
    })?;
    let file = toml::from_str(&text).map_err(|err| {
        ConfigError::new(
            &CONFIG_FILE,
            format!("{} is not valid: {err}", path.display()),
        )
    })?;
    Ok((file, Some(path)))
}

fn validate_database_url(url: &str) -> Result<String, ConfigError> {
    let url = url.trim();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError::new(
            &DATABASE_URL,
            format!(
                "'{}' is not a PostgreSQL URL; expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
                redact_url(url)
            ),
        ));
    }
    url.parse::<sqlx::postgres::PgConnectOptions>()
        .map_err(|err| ConfigError::new(&DATABASE_URL, format!("cannot be parsed: {err}")))?;
    Ok(url.to_string())
}

fn validate_public_url(url: &str) -> Result<String, ConfigError> {
    let url = url.trim().trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < "http://x".len()
    {
        return Err(ConfigError::new(
            &PUBLIC_URL,
            format!("'{url}' is not an http:// or https:// URL"),
        ));
    }
    Ok(url.to_string())
}

/// Splits `tcp://host:port?tls=/dir` into the address and its TLS files.
pub fn parse_docker_endpoint(endpoint: &str, default_tls: Option<&DockerTls>) -> DockerEndpoint {
    let (address, query) = endpoint.split_once('?').unwrap_or((endpoint, ""));
    let own_tls = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("tls="))
        .filter(|dir| !dir.is_empty())
        .map(|dir| DockerTls::in_dir(Path::new(dir)));
    let tls = if address.starts_with("unix://") {
        None
    } else {
        own_tls.or_else(|| default_tls.cloned())
    };
    DockerEndpoint {
        address: address.to_string(),
        tls,
    }
}

/// One trusted proxy: an address (`10.0.0.7`) or a network (`10.0.0.0/8`).
fn parse_proxy(text: &str) -> Result<ipnet::IpNet, ConfigError> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            ConfigError::new(
                &TRUSTED_PROXIES,
                format!("'{text}' is not an IP address or network; expected e.g. 10.0.0.7 or 10.0.0.0/8"),
            )
        })
}

fn validate_docker_endpoint(endpoint: &str) -> Result<(), ConfigError> {
    let (address, query) = endpoint.split_once('?').unwrap_or((endpoint, ""));
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.split_once('=') {
            Some(("tls", dir)) if !dir.is_empty() => {
                if let Some(missing) = DockerTls::in_dir(Path::new(dir)).missing() {
                    return Err(ConfigError::new(
                        &DOCKER,
                        format!(
                            "'{endpoint}': {} does not exist (tls= names a directory with ca.pem, cert.pem and key.pem)",
                            missing.display()
                        ),
                    ));
                }
            }
            _ => {
                return Err(ConfigError::new(
                    &DOCKER,
                    format!(
                        "'{endpoint}': unknown option '{pair}'; the only option is tls=/directory"
                    ),
                ))
            }
        }
    }
    let endpoint = address;
    let ok = endpoint
        .strip_prefix("unix://")
        .map(|path| path.starts_with('/'))
        .or_else(|| {
            endpoint
                .strip_prefix("tcp://")
                .or_else(|| endpoint.strip_prefix("https://"))
                .or_else(|| endpoint.strip_prefix("http://"))
                .map(|rest| !rest.is_empty())
        })
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            &DOCKER,
            format!("'{endpoint}' is not a Docker endpoint; expected unix:///path/to/docker.sock or tcp://HOST:PORT"),
        ))
    }
}

/// Removes the password from a URL such as `postgres://user:pw@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(index) => rest.split_at(index),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let marker = if userinfo.contains(':') {
                ":[redacted]"
            } else {
                ""
            };
            format!("{scheme}://{user}{marker}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawSettings {
        RawSettings::default()
    }

    fn load(
        raw: &RawSettings,
        file: FileConfig,
        env: &[(&str, &str)],
    ) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_parts(raw, file, None, &move |setting| {
            env.iter()
                .find(|(name, _)| Some(name.as_str()) == setting.env)
                .map(|(_, value)| value.clone())
        })
    }

    #[test]
    fn defaults_serve_on_loopback_with_an_embedded_database() {
        let config = load(&raw(), FileConfig::default(), &[]).unwrap();
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert!(matches!(config.database, DatabaseConfig::Embedded));
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.public_url, "http://127.0.0.1:8080");
    }

    #[test]
    fn a_bad_bind_address_names_the_setting() {
        let raw = RawSettings {
            bind: Some("nonsense".into()),
            ..raw()
        };
        let err = load(&raw, FileConfig::default(), &[]).unwrap_err();
        assert!(err.to_string().contains("HARBORMASTER_BIND"), "{err}");
        assert!(err.to_string().contains("nonsense"), "{err}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let raw = RawSettings {
            bind: Some("127.0.0.1:9000".into()),
            ..raw()
        };
        let file = FileConfig {
            bind: Some("0.0.0.0:1".into()),
            data_dir: Some("/srv/hm".into()),
            ..FileConfig::default()
        };
        let config = load(&raw, file, &[]).unwrap();
        assert_eq!(config.bind.port(), 9000);
        assert_eq!(config.data_dir, PathBuf::from("/srv/hm"));
    }

    #[test]
    fn a_database_password_never_shows() {
        let raw = RawSettings {
            database_url: Some("postgres://app:hunter2@db.example:5432/hm".into()),
            ..raw()
        };
        let config = load(&raw, FileConfig::default(), &[]).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(
            config.database_display(),
            "postgres://app:[redacted]@db.example:5432/hm"
        );
    }

    #[test]
    fn a_non_postgres_url_is_refused_without_echoing_its_password() {
        let raw = RawSettings {
            database_url: Some("mysql://root:hunter2@db/x".into()),
            ..raw()
        };
        let err = load(&raw, FileConfig::default(), &[]).unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"));
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn numbers_out_of_range_or_malformed_name_their_variable() {
        let err = load(
            &raw(),
            FileConfig::default(),
            &[("HARBORMASTER_REQUEST_TIMEOUT_SECS", "soon")],
        )
        .unwrap_err();
        assert!(err
            .to_string()
            .contains("HARBORMASTER_REQUEST_TIMEOUT_SECS"));
        let err = load(
            &raw(),
            FileConfig::default(),
            &[("HARBORMASTER_DB_MAX_CONNECTIONS", "0")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("out of range"));
    }

    #[test]
    fn docker_endpoints_are_checked() {
        let config = load(
            &raw(),
            FileConfig::default(),
            &[(
                "HARBORMASTER_DOCKER",
                "unix:///var/run/docker.sock, tcp://10.0.0.5:2376",
            )],
        )
        .unwrap();
        assert_eq!(config.docker_endpoints.len(), 2);
        let err = load(
            &raw(),
            FileConfig::default(),
            &[("HARBORMASTER_DOCKER", "docker.sock")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("HARBORMASTER_DOCKER"));
    }

    #[test]
    fn docker_tls_comes_from_the_endpoint_or_the_global_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let endpoint = format!("tcp://10.0.0.5:2376?tls={}", dir.path().display());
        let config = load(
            &raw(),
            FileConfig::default(),
            &[
                (
                    "HARBORMASTER_DOCKER",
                    &format!("{endpoint},tcp://10.0.0.6:2376"),
                ),
                ("HARBORMASTER_DOCKER_TLS_CA", &path("ca.pem")),
                ("HARBORMASTER_DOCKER_TLS_CERT", &path("cert.pem")),
                ("HARBORMASTER_DOCKER_TLS_KEY", &path("key.pem")),
            ],
        )
        .unwrap();
        let endpoints = config.docker_endpoints();
        assert_eq!(endpoints[0].address, "tcp://10.0.0.5:2376");
        assert_eq!(endpoints[0].tls, Some(DockerTls::in_dir(dir.path())));
        assert_eq!(
            endpoints[1].tls.as_ref().unwrap().key,
            dir.path().join("key.pem")
        );

        let err = load(
            &raw(),
            FileConfig::default(),
            &[("HARBORMASTER_DOCKER", "tcp://h:2376?tls=/nowhere")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nowhere/ca.pem"), "{err}");
        let err = load(
            &raw(),
            FileConfig::default(),
            &[("HARBORMASTER_DOCKER_TLS_CA", &path("ca.pem"))],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("HARBORMASTER_DOCKER_TLS_CERT"),
            "{err}"
        );
    }

    #[test]
    fn the_retire_grace_defaults_to_ten_minutes_and_is_checked() {
        let config = load(&raw(), FileConfig::default(), &[]).unwrap();
        assert_eq!(config.retire_grace, Duration::from_secs(600));
        assert_eq!(config.docker_reconcile_interval, Duration::from_secs(300));
        let err = load(
            &raw(),
            FileConfig::default(),
            &[("HARBORMASTER_RETIRE_GRACE_SECS", "later")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("HARBORMASTER_RETIRE_GRACE_SECS"));
    }

    #[test]
    fn run_stage_monitoring_defaults_to_five_minutes_and_eight_at_once_and_is_checked() {
        let config = load(&raw(), FileConfig::default(), &[]).unwrap();
        assert_eq!(config.runtime, crate::runtime::Settings::default());
        assert_eq!(config.runtime.drift_interval, Duration::from_secs(300));
        assert_eq!(config.runtime.drift_concurrency, 8);
        let config = load(
            &raw(),
            FileConfig::default(),
            &[
                ("HARBORMASTER_DRIFT_INTERVAL_SECS", "60"),
                ("HARBORMASTER_DRIFT_CONCURRENCY", "2"),
                ("HARBORMASTER_BASELINE_WINDOW_SECS", "0"),
            ],
        )
        .unwrap();
        assert_eq!(config.runtime.drift_interval, Duration::from_secs(60));
        assert_eq!(config.runtime.drift_concurrency, 2);
        assert_eq!(config.runtime.baseline_window, Duration::ZERO);
        let err = load(
            &raw(),
            FileConfig::default(),
            &[("HARBORMASTER_DRIFT_CONCURRENCY", "0")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("HARBORMASTER_DRIFT_CONCURRENCY"));
    }

    #[test]
    fn sessions_and_trusted_proxies_have_safe_defaults_and_are_checked() {
        let config = load(&raw(), FileConfig::default(), &[]).unwrap();
        assert_eq!(config.auth.session_idle, Duration::from_secs(8 * 3600));
        assert_eq!(
            config.auth.session_absolute,
            Duration::from_secs(7 * 24 * 3600)
        );
        assert!(
            config.auth.trusted_proxies.is_empty(),
            "X-Forwarded-For is not believed unless asked"
        );
        assert!(!config.serves_tls());

        let config = load(
            &raw(),
            FileConfig::default(),
            &[
                ("HARBORMASTER_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7"),
                ("HARBORMASTER_SESSION_IDLE_MINUTES", "30"),
                ("HARBORMASTER_PUBLIC_URL", "https://hm.example"),
            ],
        )
        .unwrap();
        assert_eq!(config.auth.trusted_proxies.len(), 2);
        assert_eq!(config.auth.session_idle, Duration::from_secs(1800));
        assert!(config.serves_tls());

        let err = load(
            &raw(),
            FileConfig::default(),
            &[("HARBORMASTER_TRUSTED_PROXIES", "proxy.local")],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("HARBORMASTER_TRUSTED_PROXIES"),
            "{err}"
        );
    }

    #[test]
    fn notification_settings_have_defaults_and_configured_channels_are_checked() {
        let config = load(&raw(), FileConfig::default(), &[]).unwrap();
        assert_eq!(config.notifications.digest, Duration::from_secs(600));
        assert_eq!(config.notifications.max_attempts, 8);
        let file: FileConfig = toml::from_str(
            r#"
            [notifications]
            digest_minutes = 5
            [[notifications.channels]]
            name = "ops"
            kind = "slack"
            url = "https://hooks.example/services/T0/B0/very-secret-token"
            [[notifications.routes]]
            name = "critical"
            event = "finding"
            min_severity = "critical"
            audience = "channel"
            channel = "ops"
            "#,
        )
        .unwrap();
        assert!(!format!("{file:?}").contains("very-secret-token"));
        let config = load(&raw(), file, &[]).unwrap();
        assert_eq!(config.notifications.digest, Duration::from_secs(300));
        assert_eq!(config.notifications.channels.len(), 1);
        let file: FileConfig = toml::from_str(
            r#"
            [[notifications.channels]]
            name = "hook"
            kind = "webhook"
            url = "https://hooks.example/x"
            "#,
        )
        .unwrap();
        let err = load(&raw(), file, &[]).unwrap_err();
        assert!(err.to_string().contains("notifications.channels"), "{err}");
        assert!(err.to_string().contains("signing_key"), "{err}");

        // Ownership teams and rules: kept; a bad one named by its place in the file.
        let file: FileConfig = toml::from_str(
            r#"
            [[ownership.teams]]
            name = "payments"
            kind = "development"
            [[ownership.rules]]
            kind = "image_prefix"
            value = "registry.example.com/payments/"
            layer = "image"
            team = "payments"
            "#,
        )
        .unwrap();
        let config = load(&raw(), file, &[]).unwrap();
        assert_eq!(config.ownership_teams[0].name, "payments");
        assert_eq!(config.ownership_rules[0].layer.as_deref(), Some("image"));
        let file: FileConfig = toml::from_str(
            r#"
            [[ownership.rules]]
            kind = "image_prefix"
            value = "a/"
            team = "payments"
            [[ownership.rules]]
            kind = "colour_label"
            team = "payments"
            "#,
        )
        .unwrap();
        let err = load(&raw(), file, &[]).unwrap_err().to_string();
        assert!(
            err.contains("ownership.rules") && err.contains("rule 2"),
            "{err}"
        );
        assert!(err.contains("colour_label"), "{err}");
    }

    #[test]
    fn review_schedules_and_image_age_are_read_and_checked() {
        let file: FileConfig = toml::from_str(
            "[reviews]\nimage_max_age_days = 30\n[[reviews.schedules]]\ncron = \"0 6 * * MON\"\nteam = \"payments\"\nformats = [\"xlsx\"]\n",
        )
        .unwrap();
        let config = load(&raw(), file, &[]).unwrap();
        assert_eq!(config.reviews.image_max_age_days, 30);
        assert_eq!(config.reviews.schedules.len(), 1);
        assert_eq!(
            config.reviews.schedules[0].team.as_deref(),
            Some("payments")
        );
        assert_eq!(
            load(&raw(), FileConfig::default(), &[])
                .unwrap()
                .reviews
                .image_max_age_days,
            90
        );

        let file: FileConfig =
            toml::from_str("[[reviews.schedules]]\ncron = \"0 6 * *\"\n").unwrap();
        let err = load(&raw(), file, &[]).unwrap_err().to_string();
        assert!(
            err.contains("reviews.schedules[0]") && err.contains("'0 6 * *'"),
            "{err}"
        );
        let err = load(
            &raw(),
            FileConfig::default(),
            &[("HARBORMASTER_REVIEW_IMAGE_MAX_AGE_DAYS", "0")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("HARBORMASTER_REVIEW_IMAGE_MAX_AGE_DAYS"),
            "{err}"
        );
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let err = toml::from_str::<FileConfig>("bnd = \"x\"").unwrap_err();
        assert!(err.to_string().contains("bnd"));
    }
}
