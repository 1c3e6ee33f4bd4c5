//! `GET /v1/openapi.json` on the real binary: a valid OpenAPI 3.1 document (checked by
//! openapi-spec-validator from PyPI), every operation in it answered by a real route (not the
//! fallback), and every endpoint the README's API section names present in it.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{Options, Server};
use reqwest::Method;

const OPERATOR_KEY: &str = "openapi-operator";

async fn document(server: &Server) -> serde_json::Value {
    // No key: the document is public, like tus discovery.
    let res = reqwest::get(server.url("/v1/openapi.json")).await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// `(METHOD, /v1/path)` of every operation in the document.
fn operations(doc: &serde_json::Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "options", "head", "patch"].contains(&&**method) {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_is_valid_openapi_3_1() {
    let server = Server::start(Options::default());
    let doc = document(&server).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let file = server.data_path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let validator = std::env::var("MEDIAHOST_OPENAPI_VALIDATOR")
        .unwrap_or_else(|_| "openapi-spec-validator".into());
    let out = Command::new(&validator).arg(&file).output().unwrap_or_else(|e| {
        panic!("cannot run {validator} ({e}): scripts/setup installs it, scripts/test puts it on PATH")
    });
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_operation_is_routed() {
    let server = Server::start(Options {
        config: format!("[admin]\noperator_key = \"{OPERATOR_KEY}\"\n"),
        ..Options::default()
    });
    let tenant_key = server.create_tenant("acme");
    let doc = document(&server).await;
    let ops = operations(&doc);
    assert!(ops.len() >= 15, "{ops:?}");
    let http = reqwest::Client::new();
    for (method, path) in &ops {
        let concrete = path
            .replace("{id}", "00000000-0000-7000-8000-000000000000")
            .replace("{path}", "master.m3u8")
            .replace("{tenant}", "acme");
        let operation = &doc["paths"][path][method.to_lowercase()];
        let key = if operation["security"].to_string().contains("operator_key") {
            OPERATOR_KEY
        } else {
            &tenant_key
        };
        let res = http
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                server.url(&concrete),
            )
            .bearer_auth(key)
            .header("Tus-Resumable", "1.0.0")
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body = res.text().await.unwrap();
        assert_ne!(status, 405, "{method} {path} is documented but not routed");
        assert!(
            !body.contains("no such endpoint"),
            "{method} {path} is documented but fell through to the fallback: {status} {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_in_the_readme_is_documented() {
    let server = Server::start(Options::default());
    let ops = operations(&document(&server).await);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    let mut named = 0;
    for word in readme.split('`') {
        let Some((method, path)) = word.split_once(' ') else {
            continue;
        };
        if !methods.contains(&method) || !path.starts_with("/v1/") {
            continue;
        }
        named += 1;
        let path = path.split('?').next().unwrap();
        let segments: Vec<&str> = path.split('/').collect();
        // HEAD is answered wherever GET is.
        let wanted: Vec<&str> = if method == "HEAD" {
            vec!["HEAD", "GET"]
        } else {
            vec![method]
        };
        let found = ops.iter().any(|(m, documented)| {
            let doc_segments: Vec<&str> = documented.split('/').collect();
            wanted.contains(&m.as_str())
                && doc_segments.len() == segments.len()
                && doc_segments
                    .iter()
                    .zip(&segments)
                    .all(|(d, s)| d == s || (d.starts_with('{') && d.ends_with('}')))
        });
        assert!(
            found,
            "README names `{method} {path}` but the document lacks it"
        );
    }
    assert!(named >= 10, "only {named} endpoints found in the README");
}
