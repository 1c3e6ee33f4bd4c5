//! Per-tenant storage placement on the real binary: a tenant created with `--placement` keeps
//! every object in its placement's store (a bucket of its own on the S3 server when the suite
//! runs on S3, a folder of its own otherwise), never in the main store; other tenants' objects
//! never land there; playback and delete work through it; a process without that placement in
//! its config refuses the tenant's objects instead of falling back to the main store.

mod common;

use common::{Client, Options, Server, clip};
use mediahost_blob::test_support::TestS3;
use std::path::Path;
use walkdir::WalkDir;

/// Where the vault placement keeps objects, and how to list them.
enum Vault {
    Folder(tempfile::TempDir),
    Bucket(TestS3, String),
}

impl Vault {
    /// A bucket of its own (with credentials given in the placement, not the environment) when
    /// the servers run on S3, else a folder.
    fn new() -> Self {
        if std::env::var("MEDIAHOST_TEST_STORAGE").as_deref() == Ok("s3") {
            let s3 = TestS3::from_env("placement").expect("the S3 test server");
            let bucket = s3.create_bucket_blocking();
            Vault::Bucket(s3, bucket)
        } else {
            Vault::Folder(tempfile::tempdir().unwrap())
        }
    }

    fn config(&self) -> String {
        match self {
            // The main store's S3 section, renamed into the placement's.
            Vault::Bucket(s3, bucket) => s3
                .config_toml(bucket)
                .replace("[storage", "[storage.placements.vault"),
            Vault::Folder(dir) => format!(
                "[storage.placements.vault]\nbackend = \"local\"\ndir = {:?}\n",
                dir.path().display().to_string()
            ),
        }
    }

    async fn keys(&self) -> Vec<String> {
        match self {
            Vault::Bucket(s3, bucket) => s3.object_keys(bucket).await,
            Vault::Folder(dir) => files_under(dir.path()),
        }
    }
}

/// Object keys of a local store: the files under its folder, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Keys in the server's main store.
async fn main_keys(server: &Server) -> Vec<String> {
    match &server.s3 {
        Some((s3, bucket)) => s3.object_keys(bucket).await,
        None => files_under(&server.data_path().join("objects")),
    }
}

/// `mediahost tenant create NAME [args]` on the server's database and config: (id, key), or
/// the command's stderr when it fails.
fn create_tenant(server: &Server, name: &str, args: &[&str]) -> Result<(String, String), String> {
    let out = server.cli(&[&["tenant", "create", name], args].concat());
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    let id = stdout
        .split("(id ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("tenant id in the output")
        .to_owned();
    Ok((id, stdout.lines().last().unwrap().trim().to_owned()))
}

fn of_tenant(keys: &[String], tenant: &str) -> usize {
    let prefix = format!("tenants/{tenant}/");
    keys.iter().filter(|k| k.starts_with(&prefix)).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_placed_tenant_s_objects_live_only_in_its_placement() {
    let vault = Vault::new();
    let server = Server::start(Options {
        config: vault.config(),
        ..Options::default()
    });

    let refused = create_tenant(&server, "ghost", &["--placement", "nowhere"]).unwrap_err();
    assert!(
        refused.contains("[storage.placements.nowhere]") && refused.contains("vault"),
        "{refused}"
    );
    let (acme_id, acme_key) = create_tenant(&server, "acme", &[]).unwrap();
    let (vault_id, vault_key) = create_tenant(&server, "vault", &["--placement", "vault"]).unwrap();

    let source = clip(server.data_path(), "clip.mp4", 2.0);
    let acme = Client::new(&server, &acme_key);
    let placed = Client::new(&server, &vault_key);
    let acme_video = acme.upload("main", "clip.mp4", &source).await;
    let vault_video = placed.upload("placed", "clip.mp4", &source).await;
    for (client, id) in [(&acme, &acme_video), (&placed, &vault_video)] {
        let video = client.wait_settled(id).await;
        assert_eq!(video["status"], "ready", "{video}");
    }

    // The source and every rendition of the placed tenant are in its store, and only there.
    let (in_vault, in_main) = (vault.keys().await, main_keys(&server).await);
    let source_key = format!("tenants/{vault_id}/videos/{vault_video}/source");
    assert!(in_vault.contains(&source_key), "{in_vault:?}");
    assert!(
        in_vault
            .iter()
            .any(|k| k.starts_with(&format!("tenants/{vault_id}/videos/{vault_video}/hls/"))),
        "{in_vault:?}"
    );
    assert_eq!(of_tenant(&in_main, &vault_id), 0, "{in_main:?}");
    assert!(of_tenant(&in_main, &acme_id) > 0, "{in_main:?}");
    assert_eq!(of_tenant(&in_vault, &acme_id), 0, "{in_vault:?}");

    // Playback reads from the placement.
    let video = placed.video(&vault_video).await;
    let master = video["playback"]["hls"].as_str().unwrap();
    let res = placed
        .http
        .get(master)
        .bearer_auth(&vault_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let playlist = res.text().await.unwrap();
    assert!(playlist.contains("#EXTM3U"), "{playlist}");

    // A process of the same deployment that lacks the placement refuses the tenant's objects
    // rather than looking for (or storing) them in the main store.
    let lacking = Server::start_sharing_database(Options::default(), &server);
    let res = placed
        .http
        .get(master.replacen(&server.base, &lacking.base, 1))
        .bearer_auth(&vault_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    assert!(
        lacking
            .log()
            .contains("which this process does not configure; add [storage.placements.vault]"),
        "{}",
        lacking.log()
    );

    // Deleting the video removes it from the placement.
    let res = placed
        .http
        .delete(server.url(&format!("/v1/videos/{vault_video}")))
        .bearer_auth(&vault_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(of_tenant(&vault.keys().await, &vault_id), 0);
}
