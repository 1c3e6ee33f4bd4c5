//! Bindings through the real `PluginHost`: per-tenant chains and settings, limit overrides, the
//! two failure policies, and the check that refuses bindings to missing or wrong-world plugins.
//! The reference validator is built from `plugins/validator`; the failing plugins are the
//! hostile fixtures of `tests/hostile/`.

mod support;

use std::collections::BTreeMap;

use mediahost_runtime::{
    Binding, BindingError, BindingSet, Chains, FailurePolicy, LimitOverrides, PluginFailure,
    PluginHost, UploadInfo, Verdict, World,
};

fn upload(tenant: &str, filename: &str) -> UploadInfo {
    UploadInfo {
        tenant: tenant.into(),
        video_id: "v1".into(),
        filename: Some(filename.into()),
        declared_size: Some(1_000),
        content_type: None,
        metadata: vec![],
    }
}

/// A plugin folder with the reference validator and the hostile fixtures `traps` (as plugin
/// `trap`) and `infinite-loop` (as plugin `spin`, with a 10 s manifest time limit), plus the
/// reference router.
fn host() -> (tempfile::TempDir, PluginHost) {
    let dir = tempfile::tempdir().unwrap();
    support::install(dir.path(), "validator");
    support::install(dir.path(), "router");
    for (name, fixture) in [("trap", "traps"), ("spin", "infinite-loop")] {
        let manifest = format!(
            "name = \"{name}\"\nversion = \"1.0.0\"\nworld = \"validator\"\ncomponent = \"p.wasm\"\n\
             [limits]\ntimeout_ms = 10000\n"
        );
        support::install_files(
            dir.path(),
            name,
            &manifest,
            "p.wasm",
            &mediahost_testkit::hostile_validator(fixture),
        );
    }
    let host = PluginHost::load(dir.path(), &BTreeMap::new()).unwrap();
    (dir, host)
}

fn binding(plugin: &str, policy: FailurePolicy, config: &[(&str, &str)]) -> Binding {
    Binding {
        plugin: plugin.into(),
        on_failure: policy,
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        limits: LimitOverrides::default(),
        record_failures: false,
    }
}

fn validators(bindings: Vec<Binding>) -> Chains {
    Chains {
        validator: bindings,
        ..Chains::default()
    }
}

/// Global: the reference validator alone (so the hostile plugins only run where bound).
fn operator_chain() -> Option<Chains> {
    Some(validators(vec![Binding::implicit(
        "validator",
        World::Validator,
    )]))
}

#[test]
fn a_tenants_settings_reach_only_its_own_calls() {
    let (_dir, host) = host();
    host.set_bindings(BindingSet {
        global: operator_chain(),
        ..BindingSet::default()
    });
    // Tenant a: the reference validator once more, with a WebM-only allowlist.
    host.set_tenant_bindings(
        "a",
        validators(vec![binding(
            "validator",
            FailurePolicy::FailClosed,
            &[("allowed_extensions", "webm")],
        )]),
    );
    match host.check_upload(&upload("a", "clip.mp4")) {
        Ok(Verdict::Reject(r)) => assert!(r.reason.contains("mp4"), "{}", r.reason),
        other => panic!("a's allowlist should refuse .mp4: {other:?}"),
    }
    assert_eq!(
        host.check_upload(&upload("a", "clip.webm")),
        Ok(Verdict::Accept)
    );
    // b (and a call before or after a's) sees the manifest's settings only.
    for _ in 0..2 {
        assert_eq!(
            host.check_upload(&upload("b", "clip.mp4")),
            Ok(Verdict::Accept)
        );
    }
    // Replacing a's bindings with nothing restores the operator's chain for a.
    host.set_tenant_bindings("a", Chains::default());
    assert_eq!(
        host.check_upload(&upload("a", "clip.mp4")),
        Ok(Verdict::Accept)
    );
    assert!(host.bindings().tenants.is_empty());
}

#[test]
fn without_global_bindings_every_loaded_plugin_runs_then_the_tenants() {
    let (_dir, host) = support::host_with("validator", &[]);
    host.set_tenant_bindings(
        "a",
        validators(vec![binding(
            "validator",
            FailurePolicy::FailClosed,
            &[("allowed_extensions", "webm")],
        )]),
    );
    assert_eq!(host.bindings().global, None);
    assert!(matches!(
        host.check_upload(&upload("a", "clip.mp4")),
        Ok(Verdict::Reject(_))
    ));
    assert_eq!(
        host.check_upload(&upload("b", "clip.mp4")),
        Ok(Verdict::Accept)
    );
    // The implicit global validator runs for a too: .exe is refused whatever a's settings.
    match host.check_upload(&upload("b", "setup.exe")) {
        Ok(Verdict::Reject(r)) => assert!(r.reason.contains("exe"), "{}", r.reason),
        other => panic!("{other:?}"),
    }
}

#[test]
fn fail_open_skips_and_fail_closed_refuses_naming_plugin_world_and_tenant() {
    let (_dir, host) = host();
    host.set_bindings(BindingSet {
        global: operator_chain(),
        ..BindingSet::default()
    });
    host.set_tenant_bindings(
        "open",
        validators(vec![binding("trap", FailurePolicy::FailOpen, &[])]),
    );
    host.set_tenant_bindings(
        "closed",
        validators(vec![binding("trap", FailurePolicy::FailClosed, &[])]),
    );
    assert_eq!(
        host.check_upload(&upload("open", "clip.mp4")),
        Ok(Verdict::Accept)
    );
    // The chain goes on after a skipped plugin: the operator's validator still refuses.
    assert!(matches!(
        host.check_upload(&upload("open", "setup.exe")),
        Ok(Verdict::Reject(_))
    ));
    let err = host
        .check_upload(&upload("closed", "clip.mp4"))
        .unwrap_err();
    assert_eq!(
        (err.plugin.as_str(), err.world, err.tenant.as_str()),
        ("trap", World::Validator, "closed")
    );
    assert!(
        err.to_string().starts_with(
            "plugin trap 1.0.0 (validator world, tenant closed) trapped: wasm trap: wasm \
             `unreachable` instruction executed; used wall time "
        ),
        "{err}"
    );
}

#[test]
fn a_bindings_limits_override_the_manifest() {
    let (_dir, host) = host();
    let mut spin = binding("spin", FailurePolicy::FailClosed, &[]);
    spin.limits.timeout_ms = Some(30);
    host.set_bindings(BindingSet {
        global: Some(validators(vec![spin.clone()])),
        ..BindingSet::default()
    });
    let err = host.check_upload(&upload("a", "clip.mp4")).unwrap_err();
    assert_eq!(err.cause, PluginFailure::Timeout { timeout_ms: 30 });
    assert_eq!(err.budget.as_ref().unwrap().timeout_ms, 30);

    spin.limits = LimitOverrides {
        fuel: Some(5_000),
        ..LimitOverrides::default()
    };
    host.set_bindings(BindingSet {
        global: Some(validators(vec![spin])),
        ..BindingSet::default()
    });
    let err = host.check_upload(&upload("a", "clip.mp4")).unwrap_err();
    assert_eq!(err.cause, PluginFailure::OutOfFuel { fuel: 5_000 });

    let mut small = binding("validator", FailurePolicy::FailClosed, &[]);
    small.limits.memory_mib = Some(1);
    let chains = validators(vec![small]);
    host.check_bindings(&chains).unwrap();
    host.set_bindings(BindingSet {
        global: Some(chains),
        ..BindingSet::default()
    });
    let err = host.check_upload(&upload("a", "clip.mp4")).unwrap_err();
    assert_eq!(
        err.cause,
        PluginFailure::Memory {
            limit_bytes: 1 << 20
        }
    );
}

#[test]
fn a_bound_plugin_that_is_not_loaded_fails_by_its_policy() {
    let (_dir, host) = host();
    host.set_bindings(BindingSet {
        global: Some(validators(vec![binding(
            "gone",
            FailurePolicy::FailOpen,
            &[],
        )])),
        ..BindingSet::default()
    });
    assert_eq!(
        host.check_upload(&upload("a", "clip.mp4")),
        Ok(Verdict::Accept)
    );
    host.set_tenant_bindings(
        "a",
        validators(vec![binding("router", FailurePolicy::FailClosed, &[])]),
    );
    let err = host.check_upload(&upload("a", "clip.mp4")).unwrap_err();
    assert_eq!(
        err.cause,
        PluginFailure::Unavailable("the plugin implements the router world, not validator".into())
    );
    assert_eq!(err.budget, None);
}

#[test]
fn bindings_are_checked_against_the_loaded_plugins() {
    let (_dir, host) = host();
    let check = |world: World, b: Binding| {
        let mut chains = Chains::default();
        chains.get_mut(world).push(b);
        host.check_bindings(&chains)
    };
    let ok = |p: &str| binding(p, FailurePolicy::FailClosed, &[]);
    assert_eq!(check(World::Validator, ok("validator")), Ok(()));
    assert_eq!(check(World::Router, ok("router")), Ok(()));
    assert_eq!(
        check(World::Validator, ok("nope")),
        Err(BindingError::NotLoaded {
            plugin: "nope".into(),
            world: World::Validator
        })
    );
    let err = check(World::Validator, ok("router")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin \"router\" implements the router world and cannot be bound in the validator chain"
    );
    for limits in [
        LimitOverrides {
            fuel: Some(0),
            ..LimitOverrides::default()
        },
        LimitOverrides {
            memory_mib: Some(1 << 20),
            ..LimitOverrides::default()
        },
    ] {
        let mut b = ok("validator");
        b.limits = limits;
        assert!(
            matches!(check(World::Validator, b), Err(BindingError::Limits { .. })),
            "{limits:?}"
        );
    }
}
