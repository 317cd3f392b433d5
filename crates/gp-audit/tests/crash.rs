//! The SQLite trail's own log under `kill -9`: a child process appends rows under load
//! and is killed with SIGKILL at a random moment, again and again, each child reopening
//! (and recovering) what the last one left. Every row a child saw acknowledged must be in
//! the trail afterwards, whole, and once. Segments are made small (64 KiB) so that the
//! kills land on segment switches, recycled segments and spares being zero-filled, not
//! only on plain appends. Bounded: at most [`ROUNDS`] children within [`BUDGET`].
//!
//! Every third row carries a notification event (its write's): the event must be in the
//! outbox exactly when its row is in the trail, once, whatever the kill interrupted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gp_audit::{AuditQuery, AuditRecord, AuditStore, NewEvent, SqliteAudit, Synchronous};

/// Set in a child: the trail's path. The child appends until it is killed.
const CHILD_TRAIL: &str = "GP_AUDIT_CRASH_TRAIL";
/// Set in a child: its round, so that its row ids are its own.
const CHILD_ROUND: &str = "GP_AUDIT_CRASH_ROUND";
const ROUNDS: u32 = 12;
const BUDGET: Duration = Duration::from_secs(60);
const SEGMENT_BYTES: u64 = 64 * 1024;
/// Requests appending at once in a child: rows arrive together and share frames.
const WRITERS: u32 = 24;
/// A child that is never killed (its parent died) stops by itself.
const CHILD_LIFETIME: Duration = Duration::from_secs(30);

/// The row a child writes under `id`: every field derived from the id, so a row read
/// back can be checked whole.
fn row(id: &str) -> AuditRecord {
    let n: u64 = id.bytes().map(u64::from).sum();
    AuditRecord {
        id: id.to_owned(),
        recorded: format!("2026-12-06T10:{:02}:{:02}.000Z", n % 60, (n / 60) % 60),
        request_id: format!("req-{id}"),
        request_id_supplied: Some(n.is_multiple_of(2)),
        supplier: Some("crash-test".into()),
        token_id: Some(format!("tok-{id}")),
        patient: Some("9000000009".into()),
        practice: Some("A12345".into()),
        interaction: "read".into(),
        resource_type: Some("Patient".into()),
        status: 200,
        outcome_code: None,
        replica: format!("replica-{}", n % 7),
    }
}

/// Whether the row `id` carries an event: every third a writer appends.
fn has_event(id: &str) -> bool {
    id.rsplit('-')
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .is_some_and(|n| n % 3 == 0)
}

/// The event the row `id` carries, derived from the id.
fn event(id: &str) -> NewEvent {
    NewEvent {
        id: format!("event-{id}"),
        kind: "reading-recorded".into(),
        patient: "9000000009".into(),
        practice: "A12345".into(),
        resource_type: "Observation".into(),
        resource_id: Some(format!("obs-{id}")),
        occurred: "2026-12-06T10:00:00.000Z".into(),
        source: "gateway".into(),
        supplier: Some("crash-test".into()),
    }
}

fn open(path: &Path) -> SqliteAudit {
    SqliteAudit::open_sized(
        path,
        Duration::from_secs(10),
        Synchronous::Full,
        SEGMENT_BYTES,
    )
    .unwrap_or_else(|e| panic!("the trail opens after a kill: {e}"))
}

/// The child: appends rows from [`WRITERS`] tasks and prints each acknowledged id, one
/// line each (`ack <id>`), flushed, until it is killed.
fn child(trail: &str) {
    let round: u32 = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = Arc::new(open(Path::new(trail)));
        let stdout = Arc::new(Mutex::new(std::io::stdout()));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..WRITERS {
            let store = store.clone();
            let stdout = stdout.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u32;
                while started.elapsed() < CHILD_LIFETIME {
                    let id = format!("r{round:03}-w{t:02}-{n:07}");
                    let events = if has_event(&id) {
                        vec![event(&id)]
                    } else {
                        Vec::new()
                    };
                    store.append_with_events(row(&id), events).await.unwrap();
                    let mut out = stdout.lock().unwrap();
                    use std::io::Write;
                    writeln!(out, "ack {id}").unwrap();
                    out.flush().unwrap();
                    n += 1;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// A small generator for kill times; its seed is printed so a failing run can be
/// repeated (`GP_AUDIT_CRASH_SEED`).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn every_acknowledged_row_survives_repeated_kill_9() {
    if let Ok(trail) = std::env::var(CHILD_TRAIL) {
        child(&trail);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trail = dir.path().join("trail.sqlite");
    let seed = std::env::var("GP_AUDIT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("GP_AUDIT_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut acknowledged: Vec<String> = Vec::new();
    let mut rounds = 0;
    while rounds < ROUNDS && started.elapsed() < BUDGET {
        let mut child = Command::new(&exe)
            .args([
                "every_acknowledged_row_survives_repeated_kill_9",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_TRAIL, &trail)
            .env(CHILD_ROUND, rounds.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut ids = Vec::new();
            let mut lines = std::io::BufReader::new(stdout);
            let mut line = Vec::new();
            // Only whole lines: a line cut by the kill was not (fully) acknowledged.
            while lines.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                if line.ends_with(b"\n") {
                    let text = String::from_utf8_lossy(&line[..line.len() - 1]);
                    if let Some(id) = text.strip_prefix("ack ") {
                        ids.push(id.to_owned());
                    }
                }
                line.clear();
            }
            ids
        });
        // From just after start (opening and recovery) to well into the load.
        #[expect(
            clippy::disallowed_methods,
            reason = "the test's own thread, no async runtime"
        )]
        std::thread::sleep(Duration::from_millis(30 + rng.below(900)));
        child.kill().unwrap();
        child.wait().unwrap();
        let ids = reader.join().unwrap();
        println!("round {rounds}: {} rows acknowledged", ids.len());
        acknowledged.extend(ids);
        rounds += 1;
    }
    assert!(rounds >= 3, "only {rounds} rounds ran within the budget");
    assert!(
        acknowledged.len() > 1_000,
        "too few rows to say anything: {}",
        acknowledged.len()
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (rows, events) = runtime.block_on(async {
        let store = open(&trail);
        let rows = store
            .query(AuditQuery {
                limit: 10_000_000,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        let events = store
            .notifications()
            .unwrap()
            .events_after(0, 10_000_000)
            .await
            .unwrap();
        (rows, events)
    });
    let mut ids = HashSet::new();
    for r in &rows {
        assert!(ids.insert(r.id.as_str()), "row {} is there twice", r.id);
        assert_eq!(*r, row(&r.id), "row {} is whole", r.id);
    }
    // Events: each once and whole, in seq order, and exactly those of the rows in the
    // trail that carry one.
    let mut event_ids = HashSet::new();
    for e in &events {
        let id = e.event.id.strip_prefix("event-").unwrap();
        assert!(event_ids.insert(id), "event of {id} is there twice");
        assert_eq!(e.event, event(id), "event of {id} is whole");
        assert!(
            ids.contains(id),
            "event of {id}, whose row is not in the trail"
        );
    }
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    let without: Vec<&&str> = ids
        .iter()
        .filter(|id| has_event(id) && !event_ids.contains(*id))
        .collect();
    assert!(
        without.is_empty(),
        "{} rows in the trail without their event (seed {seed}), e.g. {:?}",
        without.len(),
        &without[..without.len().min(5)]
    );
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !ids.contains(id.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged rows lost after {rounds} kills (seed {seed}), e.g. {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(5)]
    );
    // Segments are numbered in order: one per opening, the rest switched to when full.
    let last_segment = std::fs::read_dir(log_dir(&trail))
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".log")?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    println!(
        "{} rows acknowledged, {} in the trail, {} events, {rounds} kills, {last_segment} segments",
        acknowledged.len(),
        rows.len(),
        events.len()
    );
    assert!(
        last_segment > u64::from(rounds) * 2,
        "the kills must cross segment switches: {last_segment} segments"
    );
}

/// The log directory beside the trail (`<sqlite_path>-log`).
fn log_dir(trail: &Path) -> std::path::PathBuf {
    let mut name = trail.as_os_str().to_owned();
    name.push("-log");
    name.into()
}
