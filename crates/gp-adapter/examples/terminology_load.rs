#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]
//! What loading national-size maps costs: wall time, the resident set the process grows
//! by, and the peak during the load, against issue 26's targets (a 500,000-row file
//! loads in ≤ 2 s on one core and holds ≤ 60 MiB resident).
//!
//! ```sh
//! cargo run --release --offline -p gp-adapter --example terminology_load [ROWS]
//! ```
//!
//! The parent writes synthetic Read v2 and CTV3 forward maps of `ROWS` (500,000) rows
//! each to a temporary directory, then runs itself as a child (under `taskset -c 0` when
//! there is one) for each measurement, so neither the generator's allocations nor the
//! files' text are in the figures: the Read v2 map alone, then both as a gateway
//! configured with both loads them. The child reads `VmRSS` before and after
//! `Maps::load`, as the gateway loads an operator's `[terminology]`, again half a second
//! later, and `VmHWM`; it prints one line. The gateway's allocator (mimalloc) keeps
//! memory the load freed for reuse rather than returning it, so the growth in `VmRSS`
//! counts the load's transient rows too, not only the maps it keeps.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use gp_adapter::terminology::{CodeScheme, MapFiles, Maps, testdata};

/// The allocator the `gp-gateway` binary ships with, so the resident set is the gateway's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHILD: &str = "--load-in-child";
const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(CHILD) {
        child(args[2..].iter().map(PathBuf::from).collect());
        return;
    }
    let rows: usize = args.get(1).map_or(500_000, |r| r.parse().unwrap());
    let dir = std::env::temp_dir().join(format!(
        "gp-gateway-terminology-load-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut paths = Vec::new();
    for scheme in [CodeScheme::ReadV2, CodeScheme::Ctv3] {
        let generated = testdata::generate(
            scheme,
            &[],
            &testdata::Options {
                rows,
                expect: false,
                ..testdata::Options::default()
            },
        );
        let path = dir.join(testdata::file_name(scheme));
        std::fs::write(&path, &generated.text).unwrap();
        println!(
            "{}: {rows} rows, {:.1} MiB",
            path.display(),
            generated.text.len() as f64 / MIB
        );
        paths.push(path);
    }

    let exe = std::env::current_exe().unwrap();
    let pinned = Command::new("taskset")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    for (what, files) in [("Read v2", &paths[..1]), ("Read v2 + CTV3", &paths[..])] {
        let mut cmd = if pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.arg(CHILD).args(files).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "{what}{}: {}",
            if pinned { ", pinned to CPU 0" } else { "" },
            String::from_utf8_lossy(&out.stdout).trim_end()
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `VmRSS` and `VmHWM` of this process, in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in /proc/self/status"))
    };
    (kib("VmRSS:") * 1024, kib("VmHWM:") * 1024)
}

/// Loads `paths` (Read v2, then CTV3) as the gateway does and prints what it cost.
fn child(paths: Vec<PathBuf>) {
    // Every gateway holds the embedded maps: built before the baseline.
    drop(Maps::embedded());
    let files = MapFiles {
        read_v2: paths[..1].to_vec(),
        ctv3: paths[1..].to_vec(),
        ..MapFiles::default()
    };
    let (rss_before, _) = memory();
    let start = Instant::now();
    let (maps, reports) = Maps::load(&files).unwrap_or_else(|e| panic!("{e}"));
    let elapsed = start.elapsed();
    let (rss_after, hwm) = memory();
    // Half a second of a serving process's sleeps and allocations, for any memory the
    // allocator returns late.
    for _ in 0..50 {
        // Not async: this process has no runtime to block.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(10));
        let churn: Vec<Vec<u8>> = (0..1000).map(|i| vec![0u8; 64 + i % 4096]).collect();
        std::hint::black_box(churn);
    }
    let (rss_settled, _) = memory();
    let rows: u64 = reports.iter().map(|(_, r)| r.rows).sum();
    let codes: usize = reports.iter().map(|(s, _)| maps.len(*s)).sum();
    let grown = |rss: u64| rss.saturating_sub(rss_before) as f64 / MIB;
    println!(
        "load {:.0} ms ({:.0} ns a row), {codes} codes mapped; VmRSS +{:.1} MiB \
         ({:.1} → {:.1} MiB), +{:.1} MiB half a second later; VmHWM {:.1} MiB",
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_nanos() as f64 / rows as f64,
        grown(rss_after),
        rss_before as f64 / MIB,
        rss_after as f64 / MIB,
        grown(rss_settled),
        hwm as f64 / MIB,
    );
    drop(maps);
}
