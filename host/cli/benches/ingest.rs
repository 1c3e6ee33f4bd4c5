//! Upload throughput and memory, side by side on loopback: `mediahost serve` (tus and one
//! streaming `PUT`), the official Node tus server (`@tus/server` + `@tus/file-store`, from
//! `benches/tus-node/`, installed by `scripts/setup`) and `dd` writing the same bytes to the same
//! disk.
//!
//! One run:
//! 1. writes a file of random bytes (`INGEST_BENCH_MIB`, default 1024) under `INGEST_BENCH_DIR`
//!    (default the system temp dir; every file of the run lives there, so all of it is one disk);
//! 2. for `INGEST_BENCH_ROUNDS` rounds (default 3), each case once: `dd conv=fsync`, tus with
//!    8 MiB and 64 MiB PATCHes to mediahost and to @tus/server (the same client, which sends
//!    the file's bytes from memory; `INGEST_BENCH_CLIENT=file` streams them from the file
//!    instead, at the cost of the client's CPU, which the servers share), 4 tus uploads at
//!    once with 8 MiB PATCHes (each a quarter of the file, on connections of their own: what a
//!    server shared by several clients does) to each, and one HTTP/2 (h2c, prior knowledge)
//!    `PUT /v1/videos/{id}/source` to mediahost. `sync` runs before
//!    each case (untimed), so one case's dirty pages are not written back during the next;
//! 3. prints the median MB/s (10^6 bytes/s) of each case, the ratios the targets are about and
//!    both servers' peak RSS (`VmHWM`). Each case has two figures: *answered* (the time until the
//!    last answer) and *durable* (plus a `sync` run right after it, timed: the time until the
//!    bytes are on disk, whoever wrote them). Beside them, the CPU seconds per GiB the server
//!    (user + system, its threads and children) and the client (this process) used: on a
//!    machine with few cores, client, server and kernel share them, so throughput alone hides
//!    what each server costs. Then the machine's ceilings beside twice `@tus/server`'s answered
//!    figures: the sha256 of one stream on one core (sequential, so one upload cannot hash
//!    faster) and the fsynced disk (`dd`), what bounds a server that hashes every byte and
//!    answers only once it is durable;
//! 4. the per-request cost: on each server, two uploads of `INGEST_BENCH_SMALL_PATCHES` (default
//!    1000; 0 skips this) PATCHes of 1 KiB, alternating, one request at a time on a kept-alive
//!    connection; prints the median, 90th and 99th percentile time of a PATCH;
//! 5. on a fresh mediahost server, one `PUT` of twice the file's size over HTTP/1.1 and one over
//!    h2c (the file sent twice in one body), with the server's RSS before and peak RSS after each:
//!    memory must stay flat however big the body is. `INGEST_BENCH_BIG=0` skips this part.
//!
//! A case's time runs from the creating request (tus `POST`, `POST /v1/videos`) to the answer of
//! the last request, so it includes what each server does before it answers: for mediahost,
//! hashing and moving the source to object storage and queuing the transcode. mediahost fsyncs
//! what it acknowledges; @tus/file-store never fsyncs (its bytes are still in the page cache
//! when it answers). The transcode worker is off (`worker.enabled = false`): the bench measures
//! ingest, and random bytes would only fail the probe. Everything else is mediahost's default.
//!
//! Run: `cargo bench -p mediahost --bench ingest` (see BENCHMARKS.md, "Uploads").

mod support;

use anyhow::{Context, ensure};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{
    MIB, Payload, Server, clock_ticks_per_s, cpu_ticks_of, env_number, free_port, loadavg, median,
    put_upload, random_file, tree_cpu_ticks, tus_upload,
};

/// What one run measures, from the environment.
struct Settings {
    /// Bytes of the random file.
    size: u64,
    /// Rounds of every throughput case; medians are reported.
    rounds: usize,
    /// Whether to run the large single-request `PUT`s (twice the file's size).
    big: bool,
    /// Where the file, the servers' data and dd's output go.
    dir: PathBuf,
    /// Whether the client sends from the file (`INGEST_BENCH_CLIENT=file`) rather than from
    /// memory (`memory`, the default).
    client_reads_file: bool,
    /// PATCHes of [`SMALL_PATCH`] bytes sent to each server for the per-request cost (0: none).
    small_patches: u64,
}

/// The body of each PATCH that measures a request's cost rather than the bytes': what a
/// client with small chunks, or a slow link that sends little before each answer, pays.
const SMALL_PATCH: u64 = 1024;

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            size: env_number("INGEST_BENCH_MIB", 1024)? * MIB,
            rounds: env_number("INGEST_BENCH_ROUNDS", 3)?.max(1) as usize,
            big: env_number("INGEST_BENCH_BIG", 1)? != 0,
            small_patches: env_number("INGEST_BENCH_SMALL_PATCHES", 1000)?,
            dir: std::env::var_os("INGEST_BENCH_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
            client_reads_file: match std::env::var("INGEST_BENCH_CLIENT").as_deref() {
                Ok("file") => true,
                Ok("memory") | Err(_) => false,
                Ok(other) => {
                    anyhow::bail!("INGEST_BENCH_CLIENT is `memory` or `file`, not {other:?}")
                }
            },
        })
    }
}

/// Flushes every dirty page, so a case starts with nothing of the previous one to write back.
fn sync() -> anyhow::Result<()> {
    ensure!(Command::new("sync").status()?.success(), "sync failed");
    Ok(())
}

/// `mediahost serve` on a fresh data dir under `dir`, with a tenant; returns it and the key.
fn start_mediahost(dir: &Path) -> anyhow::Result<(Server, String)> {
    let data = tempfile::Builder::new()
        .prefix("mediahost-")
        .tempdir_in(dir)?
        .keep();
    support::start_api(data)
}

/// `@tus/server` with `@tus/file-store` in a fresh folder under `dir`.
fn start_tus_node(dir: &Path) -> anyhow::Result<Server> {
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/tus-node");
    ensure!(
        app.join("node_modules/@tus/server").is_dir(),
        "@tus/server is not installed in {}: run scripts/setup (npm ci there)",
        app.display()
    );
    let files = tempfile::Builder::new()
        .prefix("tus-node-")
        .tempdir_in(dir)?
        .keep();
    let port = free_port();
    let mut child = Command::new("node")
        .arg(app.join("server.mjs"))
        .arg(port.to_string())
        .arg(&files)
        .env_remove("DEBUG")
        .env("NODE_ENV", "production")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start node (apt install nodejs)")?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let mut server = Server {
        child,
        name: "@tus/server",
        port,
        data: files,
    };
    ensure!(line.trim() == "listening", "@tus/server said {line:?}");
    server.wait_listening()?;
    Ok(server)
}

/// `dd` copying `file` to a new file beside it, fsynced before dd exits.
fn dd(file: &Path, dir: &Path) -> anyhow::Result<Duration> {
    let out = dir.join("dd.out");
    let started = Instant::now();
    let status = Command::new("dd")
        .arg(format!("if={}", file.display()))
        .arg(format!("of={}", out.display()))
        .args(["bs=8M", "conv=fsync"])
        .stderr(Stdio::null())
        .status()?;
    let elapsed = started.elapsed();
    ensure!(status.success(), "dd failed: {status}");
    std::fs::remove_file(out)?;
    Ok(elapsed)
}

/// Deletes what a server kept of the previous uploads, so the disk does not fill up over rounds.
fn clear_dir(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The throughput cases, in the order they run each round.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Case {
    Dd,
    OursTus8,
    OursTus64,
    OursPutH2c,
    OursTus8Concurrent,
    NodeTus8,
    NodeTus64,
    NodeTus8Concurrent,
}

impl Case {
    const ALL: [Case; 8] = [
        Case::Dd,
        Case::OursTus8,
        Case::OursTus64,
        Case::OursPutH2c,
        Case::OursTus8Concurrent,
        Case::NodeTus8,
        Case::NodeTus64,
        Case::NodeTus8Concurrent,
    ];

    /// Whether mediahost (true) or @tus/server (false) takes this case; `None` for dd.
    fn to_mediahost(self) -> Option<bool> {
        match self {
            Case::Dd => None,
            Case::OursTus8 | Case::OursTus64 | Case::OursPutH2c | Case::OursTus8Concurrent => {
                Some(true)
            }
            Case::NodeTus8 | Case::NodeTus64 | Case::NodeTus8Concurrent => Some(false),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Case::Dd => "dd bs=8M conv=fsync",
            Case::OursTus8 => "mediahost tus, 8 MiB PATCHes",
            Case::OursTus64 => "mediahost tus, 64 MiB PATCHes",
            Case::OursPutH2c => "mediahost PUT, h2c",
            Case::NodeTus8 => "@tus/server tus, 8 MiB PATCHes",
            Case::NodeTus64 => "@tus/server tus, 64 MiB PATCHes",
            Case::OursTus8Concurrent => "mediahost tus, 8 MiB, 4 uploads at once",
            Case::NodeTus8Concurrent => "@tus/server tus, 8 MiB, 4 uploads at once",
        }
    }
}

/// CPU ticks (user + system) so far of `server` with its threads and children, and of this
/// process, the client (its own only: its children are the servers).
fn cpu_ticks(server: u32) -> (u64, u64) {
    let client = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| Some(cpu_ticks_of(stat.rsplit_once(')')?.1)))
        .unwrap_or(0);
    (tree_cpu_ticks(server), client)
}

/// One case's figures, a value per round: answered MB/s, durable MB/s, and the (server,
/// client) CPU seconds per GiB.
type CaseRounds = (Case, Vec<f64>, Vec<f64>, Vec<(f64, f64)>);

fn mb_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let work = tempfile::Builder::new()
        .prefix("ingest-bench-")
        .tempdir_in(&settings.dir)?;
    let dir = work.path();
    println!(
        "ingest bench: {} MiB random file, {} round(s), in {} (load average at start: {})",
        settings.size / MIB,
        settings.rounds,
        dir.display(),
        loadavg()
    );
    let file = dir.join("random.bin");
    random_file(&file, settings.size)?;
    let in_memory = match settings.client_reads_file {
        true => None,
        false => Some(bytes::Bytes::from(std::fs::read(&file)?)),
    };
    let payload = match &in_memory {
        Some(bytes) => Payload::Memory(bytes),
        None => Payload::File(&file),
    };
    println!(
        "the client sends {}",
        match settings.client_reads_file {
            true => "from the file",
            false => "from memory",
        }
    );

    let (ours, key) = start_mediahost(dir)?;
    let ours_base = format!("http://127.0.0.1:{}", ours.port);
    let node = start_tus_node(dir)?;
    let node_endpoint = format!("http://127.0.0.1:{}/files", node.port);
    let h1 = reqwest::Client::builder().http1_only().build()?;
    let h2c = reqwest::Client::builder().http2_prior_knowledge().build()?;

    let mut results: Vec<CaseRounds> = Case::ALL
        .iter()
        .map(|c| (*c, Vec::new(), Vec::new(), Vec::new()))
        .collect();
    let gib = settings.size as f64 / (1024.0 * MIB as f64);
    let ticks_per_gib = clock_ticks_per_s() * gib;
    for round in 1..=settings.rounds {
        for (case, speeds, durable_speeds, cpu) in results.iter_mut() {
            sync()?;
            let server = case
                .to_mediahost()
                .map(|ours_case| if ours_case { &ours } else { &node }.child.id());
            let cpu_before = server.map(cpu_ticks);
            let uploads = format!("{ours_base}/v1/uploads");
            let (s, m) = (settings.size, MIB);
            let time = match case {
                Case::Dd => dd(&file, dir)?,
                Case::OursTus8 => {
                    tus_upload(&h1, &uploads, Some(&key), payload, s, 8 * m)
                        .await?
                        .time
                }
                Case::OursTus64 => {
                    tus_upload(&h1, &uploads, Some(&key), payload, s, 64 * m)
                        .await?
                        .time
                }
                Case::OursPutH2c => put_upload(&h2c, &ours_base, &key, payload, 1).await?.1,
                Case::NodeTus8 => {
                    tus_upload(&h1, &node_endpoint, None, payload, s, 8 * m)
                        .await?
                        .time
                }
                Case::NodeTus64 => {
                    tus_upload(&h1, &node_endpoint, None, payload, s, 64 * m)
                        .await?
                        .time
                }
                Case::OursTus8Concurrent => {
                    concurrent_tus(&h1, &uploads, Some(&key), payload, s).await?
                }
                Case::NodeTus8Concurrent => {
                    concurrent_tus(&h1, &node_endpoint, None, payload, s).await?
                }
            };
            if let (Some(server), Some((server_before, client_before))) = (server, cpu_before) {
                let (server_after, client_after) = cpu_ticks(server);
                cpu.push((
                    (server_after - server_before) as f64 / ticks_per_gib,
                    (client_after - client_before) as f64 / ticks_per_gib,
                ));
            }
            let synced = Instant::now();
            sync()?;
            let durable = time + synced.elapsed();
            let (speed, durable_speed) = (mb_s(settings.size, time), mb_s(settings.size, durable));
            println!(
                "round {round}: {:<34} {:>8.1} MB/s answered ({:.2} s), {:>8.1} MB/s durable ({:.2} s)",
                case.label(),
                speed,
                time.as_secs_f64(),
                durable_speed,
                durable.as_secs_f64()
            );
            speeds.push(speed);
            durable_speeds.push(durable_speed);
            // What the servers kept (sources, tus files) goes; their databases stay.
            clear_dir(&ours.data.join("objects"))?;
            clear_dir(&node.data)?;
        }
    }

    let find = |case: Case| results.iter().find(|(c, ..)| *c == case).expect("case");
    let cpu_median =
        |case: Case, side: fn(&(f64, f64)) -> f64| median(find(case).3.iter().map(side).collect());
    let median_of = |case: Case| median(find(case).1.clone());
    let durable_median_of = |case: Case| median(find(case).2.clone());
    println!(
        "\nmedians of {} round(s), MB/s = 10^6 bytes/s:",
        settings.rounds
    );
    println!(
        "| case | answered MB/s (median) | min | max | durable MB/s (median) | server CPU s/GiB | client CPU s/GiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (case, speeds, durable_speeds, cpu) in &results {
        let (min, max) = speeds
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
        let cpu_of = |side: fn(&(f64, f64)) -> f64| match cpu.is_empty() {
            true => "-".to_owned(),
            false => format!("{:.2}", median(cpu.iter().map(side).collect())),
        };
        println!(
            "| {} | {:.1} | {min:.1} | {max:.1} | {:.1} | {} | {} |",
            case.label(),
            median(speeds.clone()),
            median(durable_speeds.clone()),
            cpu_of(|c| c.0),
            cpu_of(|c| c.1)
        );
    }
    let dd_speed = median_of(Case::Dd);
    let dd_durable = durable_median_of(Case::Dd);
    println!("\n| ratio | answered | durable |\n|---|---:|---:|");
    for (ours_case, node_case, what) in [
        (Case::OursTus8, Case::NodeTus8, "8 MiB"),
        (Case::OursTus64, Case::NodeTus64, "64 MiB"),
        (
            Case::OursTus8Concurrent,
            Case::NodeTus8Concurrent,
            "8 MiB, 4 uploads at once",
        ),
    ] {
        println!(
            "| mediahost / @tus/server, tus {what} | {:.2} | {:.2} |",
            median_of(ours_case) / median_of(node_case),
            durable_median_of(ours_case) / durable_median_of(node_case)
        );
        println!(
            "| server CPU per byte, @tus/server / mediahost, tus {what} | {:.2} | |",
            cpu_median(node_case, |c| c.0) / cpu_median(ours_case, |c| c.0)
        );
        println!(
            "| mediahost tus {what} / dd | {:.2} | {:.2} |",
            median_of(ours_case) / dd_speed,
            durable_median_of(ours_case) / dd_durable
        );
    }
    println!(
        "| mediahost PUT h2c / dd | {:.2} | {:.2} |",
        median_of(Case::OursPutH2c) / dd_speed,
        durable_median_of(Case::OursPutH2c) / dd_durable
    );
    ceilings(
        &file,
        dd_durable,
        [Case::NodeTus8, Case::NodeTus64, Case::NodeTus8Concurrent].map(median_of),
    )?;
    if settings.small_patches > 0 {
        let servers = [
            (
                "mediahost",
                format!("{ours_base}/v1/uploads"),
                Some(key.as_str()),
            ),
            ("@tus/server", node_endpoint.clone(), None),
        ];
        small_patches(&h1, &servers, payload, settings.small_patches).await?;
    }
    println!(
        "\npeak RSS (VmHWM): mediahost {:.1} MiB, @tus/server {:.1} MiB",
        ours.peak_rss_mib()?,
        node.peak_rss_mib()?
    );
    drop((ours, node));

    if settings.big {
        big_puts(&settings, dir, payload).await?;
    }
    println!("load average at the end: {}", loadavg());
    Ok(())
}

/// Prints what bounds any server that hashes every byte it takes (sha256, sequential within
/// one upload) and makes it durable before it answers, beside what twice `@tus/server`'s
/// answered throughput (tus 8 MiB, 64 MiB, 4 uploads at once, in `node`) would take: where the
/// latter is higher, no such server reaches it on this machine.
fn ceilings(file: &Path, dd_durable: f64, node: [f64; 3]) -> anyhow::Result<()> {
    use sha2::Digest;
    use std::io::Read;
    let mut source = std::fs::File::open(file)?;
    let mut buffer = vec![0u8; 8 * MIB as usize];
    let (mut digest, mut hashing, mut bytes) = (sha2::Sha256::new(), Duration::ZERO, 0u64);
    loop {
        let n = source.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        let started = Instant::now();
        digest.update(&buffer[..n]);
        hashing += started.elapsed();
        bytes += n as u64;
    }
    std::hint::black_box(digest.finalize());
    println!(
        "\nceilings on this machine, MB/s:\n| what | MB/s |\n|---|---:|\n\
         | sha256 of one upload's bytes (one core) | {:.1} |\n\
         | the disk, fsynced (dd, median durable) | {dd_durable:.1} |\n\
         | 2 × @tus/server answered, tus 8 MiB / 64 MiB / 4 uploads at once | {:.1} / {:.1} / {:.1} |",
        mb_s(bytes, hashing),
        2.0 * node[0],
        2.0 * node[1],
        2.0 * node[2],
    );
    Ok(())
}

/// Uploads at once in the concurrent cases.
const CONCURRENT_UPLOADS: u64 = 4;

/// [`CONCURRENT_UPLOADS`] tus uploads at once, each of its own share of the first `size` bytes of
/// `payload` in 8 MiB PATCHes, each on its own connection (the client opens one per request in
/// flight); returns the time until the last one's last answer.
async fn concurrent_tus(
    http: &reqwest::Client,
    endpoint: &str,
    key: Option<&str>,
    payload: Payload<'_>,
    size: u64,
) -> anyhow::Result<Duration> {
    let share = size / CONCURRENT_UPLOADS;
    let started = Instant::now();
    futures::future::try_join_all(
        (0..CONCURRENT_UPLOADS)
            .map(|_| support::tus_upload(http, endpoint, key, payload, share, 8 * MIB)),
    )
    .await?;
    Ok(started.elapsed())
}

/// The per-request cost of each server: uploads of `count` PATCHes of [`SMALL_PATCH`] bytes,
/// one request at a time on a kept-alive connection, twice per server, alternating; prints
/// the median, 90th and 99th percentile time from sending a PATCH to its answer.
async fn small_patches(
    http: &reqwest::Client,
    servers: &[(&str, String, Option<&str>)],
    payload: Payload<'_>,
    count: u64,
) -> anyhow::Result<()> {
    let mut latencies = vec![Vec::new(); servers.len()];
    for _ in 0..2 {
        for ((_, endpoint, key), times) in servers.iter().zip(&mut latencies) {
            let upload = tus_upload(
                http,
                endpoint,
                *key,
                payload,
                count * SMALL_PATCH,
                SMALL_PATCH,
            )
            .await?;
            times.extend(upload.patches.iter().map(|t| t.as_secs_f64() * 1e6));
        }
    }
    println!(
        "\nper-request cost, 2 × {count} tus PATCHes of {SMALL_PATCH} bytes each (µs from sending to the answer):"
    );
    println!("| server | median | p90 | p99 |\n|---|---:|---:|---:|");
    let mut medians = Vec::new();
    for ((name, ..), mut times) in servers.iter().zip(latencies) {
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            at(0.5),
            at(0.9),
            at(0.99)
        );
        medians.push(at(0.5));
    }
    println!(
        "| median, @tus/server / mediahost | {:.2} | | |",
        medians[1] / medians[0]
    );
    Ok(())
}

/// One `PUT` of twice the file over HTTP/1.1, then one over h2c, on a fresh server: its RSS
/// before and its peak RSS after each.
async fn big_puts(settings: &Settings, dir: &Path, payload: Payload<'_>) -> anyhow::Result<()> {
    let (server, key) = start_mediahost(dir)?;
    let base = format!("http://127.0.0.1:{}", server.port);
    let size = 2 * settings.size;
    println!(
        "\nsingle PUT of {} MiB on a fresh mediahost: RSS {:.1} MiB, peak {:.1} MiB before",
        size / MIB,
        server.rss_mib()?,
        server.peak_rss_mib()?
    );
    let clients = [
        ("HTTP/1.1", reqwest::Client::builder().http1_only().build()?),
        (
            "h2c",
            reqwest::Client::builder().http2_prior_knowledge().build()?,
        ),
    ];
    for (name, http) in clients {
        sync()?;
        let (_, time) = put_upload(&http, &base, &key, payload, 2).await?;
        println!(
            "PUT {} MiB over {name:<8}: {:>8.1} MB/s ({:.2} s); server RSS {:.1} MiB, peak {:.1} MiB",
            size / MIB,
            mb_s(size, time),
            time.as_secs_f64(),
            server.rss_mib()?,
            server.peak_rss_mib()?
        );
        clear_dir(&server.data.join("objects"))?;
    }
    Ok(())
}
