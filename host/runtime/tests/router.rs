//! The `router` world end to end: the reference plugin built from `plugins/router`, loaded from a
//! plugin folder, called through `PluginHost`.

mod support;

use mediahost_runtime::{
    Binding, BindingSet, Chains, FailurePolicy, MediaInfo, PluginFailure, PluginHost,
    RenditionSpec, RouteInput, RoutePlan, World,
};
use support::{audio, host_with, mp4, video};

fn input(tenant: &str, media: MediaInfo) -> RouteInput {
    RouteInput {
        tenant: tenant.into(),
        video_id: "v1".into(),
        media,
        metadata: vec![("orientation".into(), "landscape".into())],
    }
}

fn source(width: u32, height: u32, duration_s: f64) -> MediaInfo {
    mp4(
        duration_s,
        vec![video("h264", width, height), audio(1, Some("eng"))],
    )
}

fn rung(name: &str, width: u32, height: u32, video: u32, audio: u32) -> RenditionSpec {
    RenditionSpec {
        name: name.into(),
        width,
        height,
        video_bitrate: video,
        audio_bitrate: audio,
    }
}

/// Settings of a deployment with one pro tenant.
const ACME_PRO: &[(&str, &str)] = &[
    ("tier.acme", "pro"),
    ("storage_class", "hot"),
    ("edge_group", "eu-west"),
];

#[test]
fn loads_as_a_router() {
    let (_dir, host) = host_with("router", &[]);
    let p = &host.plugins()[0];
    let world = p.serving.as_ref().unwrap().world;
    assert_eq!((p.name.as_str(), world), ("router", World::Router));
}

#[test]
fn a_pro_tenant_gets_four_rungs_from_a_1080p_source() {
    let (_dir, host) = host_with("router", ACME_PRO);
    let plan = host
        .route(&input("acme", source(1920, 1080, 30.0)))
        .unwrap();
    assert_eq!(
        plan,
        Some(RoutePlan {
            renditions: vec![
                rung("1080p", 1920, 1080, 5000, 128),
                rung("720p", 1280, 720, 2800, 128),
                rung("480p", 854, 480, 1400, 96),
                rung("360p", 640, 360, 800, 96),
            ],
            priority: 10,
            storage_class: "hot".into(),
            edge_group: "eu-west".into(),
        })
    );
}

#[test]
fn a_free_tenant_gets_three_rungs_and_the_default_storage() {
    let (_dir, host) = host_with("router", &[]);
    let plan = host
        .route(&input("globex", source(1920, 1080, 300.0)))
        .unwrap()
        .unwrap();
    assert_eq!(
        plan,
        RoutePlan {
            renditions: vec![
                rung("720p", 1280, 720, 2800, 128),
                rung("480p", 854, 480, 1400, 96),
                rung("360p", 640, 360, 800, 96),
            ],
            priority: 5,
            storage_class: "standard".into(),
            edge_group: "default".into(),
        }
    );
}

#[test]
fn tenant_tiers_do_not_leak_between_tenants() {
    let (_dir, host) = host_with("router", ACME_PRO);
    let names = |tenant: &str| -> Vec<String> {
        let plan = host
            .route(&input(tenant, source(1920, 1080, 30.0)))
            .unwrap();
        plan.unwrap()
            .renditions
            .into_iter()
            .map(|r| r.name)
            .collect()
    };
    // Alternate calls: a fresh instance per call, and only the caller's own tier key counts.
    for _ in 0..2 {
        assert_eq!(names("acme"), ["1080p", "720p", "480p", "360p"]);
        assert_eq!(names("globex"), ["720p", "480p", "360p"]);
        assert_eq!(names("acme2"), ["720p", "480p", "360p"]);
    }
    // The operator's default tier applies to tenants without their own key only.
    let (_dir, host) = host_with("router", &[("default_tier", "pro"), ("tier.cheap", "free")]);
    let plan = host
        .route(&input("cheap", source(1920, 1080, 30.0)))
        .unwrap();
    assert_eq!(plan.unwrap().renditions.len(), 3);
    let plan = host
        .route(&input("other", source(1920, 1080, 30.0)))
        .unwrap();
    assert_eq!(plan.unwrap().renditions.len(), 4);
}

#[test]
fn never_above_the_source() {
    let (_dir, host) = host_with("router", ACME_PRO);
    let plan = host
        .route(&input("acme", source(854, 480, 3600.0)))
        .unwrap()
        .unwrap();
    assert_eq!(
        plan.renditions,
        [
            rung("480p", 854, 480, 1400, 96),
            rung("360p", 640, 360, 800, 96)
        ]
    );
    assert_eq!(plan.priority, 0);

    // A portrait phone video (coded 1920x1080, rotated) keeps its shape.
    let mut v = video("h264", 1920, 1080);
    v.rotation = Some(-90);
    let plan = host
        .route(&input("acme", mp4(20.0, vec![v])))
        .unwrap()
        .unwrap();
    assert_eq!(plan.renditions[0], rung("1080p", 1080, 1920, 5000, 128));
    assert_eq!(plan.renditions[1], rung("720p", 720, 1280, 2800, 128));
}

#[test]
fn audio_only_sources_get_the_default_ladder() {
    let (_dir, host) = host_with("router", ACME_PRO);
    let plan = host
        .route(&input("acme", mp4(30.0, vec![audio(0, None)])))
        .unwrap()
        .unwrap();
    assert!(plan.renditions.is_empty());
    assert_eq!((plan.priority, plan.storage_class.as_str()), (10, "hot"));
}

#[test]
fn without_a_router_there_is_no_plan() {
    let dir = tempfile::tempdir().unwrap();
    support::install(dir.path(), "metadata-extractor");
    let host = PluginHost::load(dir.path(), &support::Settings::new()).unwrap();
    assert_eq!(
        host.route(&input("acme", source(1920, 1080, 1.0))),
        Ok(None)
    );
}

#[test]
fn a_bad_tier_is_an_error_naming_the_key() {
    let (_dir, host) = host_with("router", &[("tier.acme", "gold")]);
    // The world's default policy is fail-open: the router is skipped, no plan (built-in ladder).
    assert_eq!(
        host.route(&input("acme", source(1920, 1080, 1.0))),
        Ok(None)
    );

    let mut binding = Binding::implicit("router", World::Router);
    binding.on_failure = FailurePolicy::FailClosed;
    host.set_bindings(BindingSet {
        global: Some(Chains {
            router: vec![binding],
            ..Chains::default()
        }),
        ..BindingSet::default()
    });
    let err = host
        .route(&input("acme", source(1920, 1080, 1.0)))
        .unwrap_err();
    assert_eq!(
        err.cause,
        PluginFailure::Returned("tier.acme \"gold\" is neither \"free\" nor \"pro\"".into())
    );
    assert!(
        err.to_string().starts_with(
            "plugin router 0.1.0 (router world, tenant acme) returned an error: \
             tier.acme \"gold\" is neither \"free\" nor \"pro\"; used wall time "
        ),
        "{err}"
    );
    // Another tenant is unaffected by acme's broken key.
    assert!(
        host.route(&input("globex", source(1920, 1080, 1.0)))
            .is_ok()
    );
}
