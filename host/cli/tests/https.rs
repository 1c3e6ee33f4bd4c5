//! The HTTPS listener on the real binary: ALPN picks HTTP/2 for clients that offer it (and
//! HTTP/1.1 for those that do not), a source uploads over HTTP/2 under TLS, and a certificate
//! problem stops the server at start-up with the setting named.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{BIN, Client, Options, Server};
use reqwest::Version;

/// Runs `openssl` with the whitespace-separated `command` in `dir`.
fn openssl(command: &str, dir: &Path) {
    let out = Command::new("openssl")
        .args(command.split_whitespace())
        .current_dir(dir)
        .output()
        .expect("run openssl (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "openssl {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway CA and a server certificate it signed for `localhost` and 127.0.0.1, as an
/// operator's would be: (CA cert, server chain, server key) PEM paths.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    const EC_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(
        &format!("req -x509 {EC_KEY} -days 2 -subj /CN=test-CA -keyout ca.key -out ca.pem"),
        dir,
    );
    openssl(
        &format!("req {EC_KEY} -subj /CN=localhost -keyout server.key -out server.csr"),
        dir,
    );
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
         -extfile server.ext -out server.pem",
        dir,
    );
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

fn tls_client(ca: &Path, http1_only: bool) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn alpn_negotiates_http2_and_a_source_uploads_over_it() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(certs.path());
    let port = common::free_port();
    let mut server = Server::start(Options {
        config: format!(
            "[tls]\nlisten = \"127.0.0.1:{port}\"\ncert_file = {:?}\nkey_file = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
        ..Options::default()
    });
    let key = server.create_tenant("acme");
    let https = format!("https://localhost:{port}");

    let res = tls_client(&ca, true)
        .get(format!("{https}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), Version::HTTP_11);

    let h2 = tls_client(&ca, false);
    let client = Client {
        http: h2.clone(),
        base: https.clone(),
        key,
    };
    let clip = common::clip(server.data_path(), "clip.mp4", 2.0);
    let video = client.create_video("over h2", Some("clip.mp4")).await;
    let id = video["id"].as_str().unwrap();
    let res = client
        .put_source(id, common::file_body(&clip, false).await)
        .await;
    assert_eq!(res.version(), Version::HTTP_2, "ALPN chose h2");
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    let video = client.wait_settled(id).await;
    assert_eq!(video["status"], "ready", "{video}");
    assert_eq!(video["size"], std::fs::metadata(&clip).unwrap().len());

    // Plain HTTP keeps serving beside it.
    let plain = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(plain.status(), 200);

    // SIGTERM stops both listeners cleanly, with an HTTP/2 connection open.
    server.restart(Duration::from_secs(20));
    let res = h2.get(format!("{https}/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), Version::HTTP_2);
}

#[test]
fn a_missing_key_file_stops_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, _) = certificates(dir.path());
    let config = dir.path().join("mediahost.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\nlisten = \"127.0.0.1:{}\"\ncert_file = {:?}\nkey_file = {:?}\n",
            common::free_port(),
            cert.display().to_string(),
            dir.path().join("missing.pem").display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", common::free_port()),
            "--edge-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tls.key_file"), "{stderr}");
    assert!(stderr.contains("missing.pem"), "{stderr}");
}
