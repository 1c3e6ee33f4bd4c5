//! The one configuration file (`mediahost.toml`), with a default for every option.
//!
//! Precedence is CLI flag > environment variable > file > default; the binary applies the first
//! two on top of what [`Config::load`] returns. Every field is documented here and in the README's
//! configuration section.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named with `--config` could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file that failed.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown or mistyped key.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file that failed.
        path: PathBuf,
        /// The parser's explanation, naming the key.
        message: String,
    },
}

/// Top-level configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Folder holding the SQLite DB, object storage and temp files.
    pub data_dir: PathBuf,
    /// Base URL clients reach the API at, used in playback URLs. When unset, the request's
    /// `Host` header is used.
    pub public_url: Option<String>,
    /// The in-process transcode worker.
    pub worker: WorkerConfig,
    /// What the worker produces.
    pub transcode: TranscodeConfig,
    /// WebAssembly plugins.
    pub plugins: PluginsConfig,
    /// The operator's admin API (`/v1/plugins`).
    pub admin: AdminConfig,
    /// tus resumable uploads at `/v1/uploads`.
    pub tus: TusConfig,
    /// Default quotas of every tenant; a tenant's own quota (`mediahost tenant quota`)
    /// overrides them limit by limit. Unset limits are unlimited.
    pub quotas: crate::Quota,
    /// HTTPS: a second listener serving the same API over TLS, HTTP/2 negotiated by ALPN.
    pub tls: TlsConfig,
    /// Signed playback URLs.
    pub playback: PlaybackConfig,
    /// The edge role (`mediahost edge`): a caching proxy in front of the origin.
    pub edge: EdgeConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./mediahost-data"),
            public_url: None,
            worker: WorkerConfig::default(),
            transcode: TranscodeConfig::default(),
            plugins: PluginsConfig::default(),
            admin: AdminConfig::default(),
            tus: TusConfig::default(),
            quotas: crate::Quota::default(),
            tls: TlsConfig::default(),
            playback: PlaybackConfig::default(),
            edge: EdgeConfig::default(),
        }
    }
}

impl Config {
    /// Reads `path` when given, otherwise returns the defaults.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// The folder plugins are loaded from.
    pub fn plugin_dir(&self) -> PathBuf {
        self.plugins
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("plugins"))
    }
}

/// The transcode worker running inside the server process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Run a worker in this process.
    pub enabled: bool,
    /// Jobs processed at once.
    pub concurrency: usize,
    /// Attempts before a job that keeps failing for transient reasons is given up.
    pub max_attempts: u32,
    /// Seconds a leased job stays invisible to other workers; renewed while the job runs, so a
    /// worker that dies returns its job to the queue after at most this long.
    pub lease_seconds: u64,
    /// Milliseconds between queue polls when idle (new jobs from this process wake it at once).
    pub poll_interval_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            concurrency: 1,
            max_attempts: 3,
            lease_seconds: 60,
            poll_interval_ms: 1000,
        }
    }
}

/// Encoding settings for the rendition the worker makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscodeConfig {
    /// Target HLS segment length in seconds (keyframes are forced on this grid).
    pub segment_seconds: u32,
    /// Largest output height; smaller sources keep their size (never upscaled).
    pub max_height: u32,
    /// libx264 preset (`ultrafast` … `veryslow`).
    pub x264_preset: String,
    /// libx264 constant rate factor (lower is better quality, bigger files).
    pub crf: u32,
    /// AAC bitrate in bits per second.
    pub audio_bitrate: u64,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        Self {
            segment_seconds: 4,
            max_height: 720,
            x264_preset: "veryfast".into(),
            crf: 23,
            audio_bitrate: 128_000,
        }
    }
}

/// Where plugins come from and how hard they may work.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Folder scanned for plugins: each subfolder holding a `plugin.toml` manifest and the
    /// component it names is one plugin. Defaults to `<data_dir>/plugins`.
    pub dir: Option<PathBuf>,
    /// Per-plugin settings that override the defaults in its manifest; what the plugin's
    /// `config` import returns. Keyed by plugin name.
    pub config: BTreeMap<String, BTreeMap<String, String>>,
}

/// tus 1.0 resumable uploads (`/v1/uploads`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TusConfig {
    /// Largest `Upload-Length` accepted, in bytes (advertised as `Tus-Max-Size`).
    pub max_size: u64,
    /// Seconds an incomplete upload lives after creation before it expires and is collected.
    pub expire_seconds: u64,
    /// Seconds between sweeps that delete expired uploads (temp file, row, unfilled video).
    pub sweep_interval_seconds: u64,
    /// Lease of the per-upload write lock in seconds; a PATCH renews it while it runs, so a
    /// crashed server's lock lapses after at most this long.
    pub lock_seconds: u64,
}

impl Default for TusConfig {
    fn default() -> Self {
        Self {
            max_size: 10 * 1024 * 1024 * 1024,
            expire_seconds: 86_400,
            sweep_interval_seconds: 300,
            lock_seconds: 30,
        }
    }
}

/// HTTPS with HTTP/2 (ALPN `h2`, falling back to `http/1.1`). Off unless `listen` is set; the
/// plain listener (`listen` at the top level) keeps serving, e.g. for health checks on
/// localhost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Address of the HTTPS listener, e.g. `0.0.0.0:8443`.
    pub listen: Option<SocketAddr>,
    /// PEM file with the certificate chain, leaf first.
    pub cert_file: Option<PathBuf>,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

/// The operator's admin API.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer key of the operator, the only key the admin API accepts (tenant keys never do).
    /// Unset or blank, the admin API answers 403. Also `MEDIAHOST_OPERATOR_KEY`.
    pub operator_key: Option<String>,
}

impl AdminConfig {
    /// The operator key, if one is set and not blank.
    pub fn operator_key(&self) -> Option<&str> {
        self.operator_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
    }
}

/// Keeps the operator key out of logs and panic messages.
impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = self.operator_key.as_ref().map(|_| "<redacted>");
        f.debug_struct("AdminConfig")
            .field("operator_key", &key)
            .finish()
    }
}

/// Signed playback URLs (`?exp=&sig=`), which play without an API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlaybackConfig {
    /// Seconds a `playback.signed_hls` URL from `GET /v1/videos/{id}` stays valid.
    pub signed_url_seconds: u64,
}

impl Default for PlaybackConfig {
    fn default() -> Self {
        Self {
            signed_url_seconds: 3600,
        }
    }
}

/// The edge role (`mediahost edge`): serves signed playback URLs from a memory cache, pulling
/// misses from the origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Base URL of the origin (the api role), e.g. `http://127.0.0.1:8080`; required to run an
    /// edge. Also `--origin` / `MEDIAHOST_EDGE_ORIGIN`.
    pub origin: Option<String>,
    /// Address the edge listens on. Also `--listen` / `MEDIAHOST_EDGE_LISTEN`.
    pub listen: SocketAddr,
    /// Byte budget of the memory cache; least recently used objects are evicted beyond it.
    /// Also `--cache-bytes` / `MEDIAHOST_EDGE_CACHE_BYTES`.
    pub cache_bytes: u64,
    /// Seconds to wait for the origin to accept a connection and answer with headers before
    /// the request fails with 502.
    pub origin_timeout_seconds: u64,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            origin: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            cache_bytes: 256 * 1024 * 1024,
            origin_timeout_seconds: 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let cfg: Config = toml::from_str("").unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = toml::from_str::<Config>("[worker]\nconcurency = 2\n").unwrap_err();
        assert!(err.to_string().contains("concurency"), "{err}");
    }

    #[test]
    fn plugin_settings_parse() {
        let cfg: Config = toml::from_str(
            "[plugins]\ndir = \"/p\"\n[plugins.config.validator]\nmax_size = \"100\"\n",
        )
        .unwrap();
        assert_eq!(cfg.plugin_dir(), PathBuf::from("/p"));
        assert_eq!(cfg.plugins.config["validator"]["max_size"], "100");
    }

    #[test]
    fn operator_key_parses_and_stays_out_of_debug_output() {
        let cfg: Config = toml::from_str("[admin]\noperator_key = \"s3cret\"\n").unwrap();
        assert_eq!(cfg.admin.operator_key(), Some("s3cret"));
        assert!(!format!("{cfg:?}").contains("s3cret"));
        let blank: Config = toml::from_str("[admin]\noperator_key = \" \"\n").unwrap();
        assert_eq!(blank.admin.operator_key(), None);
        assert_eq!(Config::default().admin.operator_key(), None);
    }
}
