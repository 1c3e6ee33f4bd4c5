//! `instances = "reused"`: calls of one tenant run in the instance an earlier call left, other
//! tenants never see it, and a failed call's instance is never used again. The fixture counts
//! its calls in a global and answers `200 + count`, so the answers show which instance ran.

mod support;

use mediahost_runtime::{PluginError, PluginHost, RequestAction, RequestHead};

/// An edge transform whose `on-request` answers `200 + n` on its n-th call in an instance
/// and traps on the third.
fn counting_component() -> Vec<u8> {
    let core = r#"(core module $m
    (memory (export "memory") 1)
    (global $calls (mut i32) (i32.const 0))
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
    (func (export "on-request")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i32)
      (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
      (if (i32.eq (global.get $calls) (i32.const 3)) (then unreachable))
      ;; `respond` (case 1) with status 200 + calls, no headers, no body.
      (i32.store8 (i32.const 0) (i32.const 1))
      (i32.store16 (i32.const 8) (i32.add (i32.const 200) (global.get $calls)))
      (i32.store (i32.const 12) (i32.const 0))
      (i32.store (i32.const 16) (i32.const 0))
      (i32.store (i32.const 20) (i32.const 0))
      (i32.store (i32.const 24) (i32.const 0))
      (i32.const 0))
    (func (export "on-response") (param i32) (result i32) unreachable))"#;
    wat::parse_str(mediahost_testkit::edge_transform_component(core)).unwrap()
}

fn host(instances: &str) -> (tempfile::TempDir, PluginHost) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "name = \"counter\"\nversion = \"1.0.0\"\nworld = \"edge-transform\"\n\
         component = \"counter.wasm\"\ninstances = \"{instances}\"\n"
    );
    support::install_files(
        dir.path(),
        "counter",
        &manifest,
        "counter.wasm",
        &counting_component(),
    );
    let host = PluginHost::load(dir.path(), &Default::default()).unwrap();
    (dir, host)
}

/// The status `counter` answers a request of `tenant` with, or the call's error.
fn call(host: &PluginHost, tenant: &str) -> Result<u16, PluginError> {
    let request = RequestHead {
        method: "GET".into(),
        path: "/v1/videos/abc/hls/master.m3u8".into(),
        query: None,
        headers: vec![],
        client_ip: None,
        tenant: Some(tenant.into()),
        received_at: 0,
    };
    match host.on_request(&request)? {
        RequestAction::Respond(response) => Ok(response.status),
        RequestAction::Continue(_) => panic!("the counter always answers"),
    }
}

#[test]
fn reused_instances_serve_one_tenant_and_are_dropped_after_a_failure() {
    let (_dir, host) = host("reused");
    assert_eq!(call(&host, "acme").unwrap(), 201);
    assert_eq!(call(&host, "acme").unwrap(), 202, "the same instance again");
    assert_eq!(
        call(&host, "globex").unwrap(),
        201,
        "never another tenant's"
    );
    let trapped = call(&host, "acme").unwrap_err();
    assert!(trapped.to_string().contains("counter"), "{trapped}");
    assert_eq!(
        call(&host, "acme").unwrap(),
        201,
        "a fresh one after the trap"
    );
    assert_eq!(call(&host, "globex").unwrap(), 202);
}

#[test]
fn fresh_instances_remember_nothing() {
    let (_dir, host) = host("fresh");
    for tenant in ["acme", "acme", "globex", "acme"] {
        assert_eq!(call(&host, tenant).unwrap(), 201);
    }
}

#[test]
fn an_unknown_instances_policy_is_refused() {
    let manifest = "name = \"c\"\nversion = \"1\"\nworld = \"edge-transform\"\n\
                    component = \"c.wasm\"\ninstances = \"shared\"\n";
    let err = mediahost_runtime::Manifest::parse(manifest).unwrap_err();
    assert!(err.to_string().contains("instances"), "{err}");
}
