//! `mediahost tenant key add|list|revoke` on the real binary: rotation without downtime.

mod common;

use common::{Client, Options, Server};

fn mediahost(server: &Server, args: &[&str]) -> std::process::Output {
    server
        .command()
        .args(args)
        .arg("--data-dir")
        .arg(server.data_path())
        .output()
        .unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_rotate_and_revoked_keys_get_401() {
    let server = Server::start(Options::default());
    let first = server.create_tenant("acme");
    let added = stdout(&mediahost(&server, &["tenant", "key", "add", "acme"]));
    let second = added.lines().last().unwrap().trim().to_owned();
    assert_ne!(first, second);

    let server_ref = &server;
    let status = |key: String| async move {
        let client = Client::new(server_ref, &key);
        client.get("/v1/videos").send().await.unwrap().status()
    };
    assert_eq!(status(first.clone()).await, 200);
    assert_eq!(status(second.clone()).await, 200);

    let revoked = stdout(&mediahost(
        &server,
        &["tenant", "key", "revoke", "acme", &first[..11]],
    ));
    assert!(revoked.contains(&first[..11]), "{revoked}");
    assert_eq!(status(first.clone()).await, 401, "revoked at once");
    assert_eq!(
        status(second.clone()).await,
        200,
        "the other key keeps working"
    );

    let list = stdout(&mediahost(&server, &["tenant", "key", "list", "acme"]));
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(
        lines[1].starts_with(|c: char| c.is_ascii_hexdigit()) && lines[1].contains(&first[..11])
    );
    assert!(
        !lines[1].trim_end().ends_with('-'),
        "first key shows its revocation: {list}"
    );
    assert!(
        lines[2].contains(&second[..11]) && lines[2].trim_end().ends_with('-'),
        "{list}"
    );
    assert!(!list.contains(&second[11..]), "secrets are never listed");

    // Clear errors for mistakes.
    let out = mediahost(&server, &["tenant", "key", "revoke", "acme", "mh_00000000"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no active API key"));
    let out = mediahost(&server, &["tenant", "key", "add", "nobody"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tenant named \"nobody\""));
}
