//! `gp-gateway terminology check` and `[terminology]` in `check-config`, run as the
//! operator runs them: the binary, on files generated in the TRUD release formats.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Plain #[test]s driving a child process: there is no async runtime here to block.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gp_adapter::terminology::CodeScheme;
use gp_adapter::terminology::testdata::{self, Options};

fn run(args: &[&str], files: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gp-gateway"))
        .args(args)
        .args(files)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Writes a generated file of `scheme` and returns its path and what it holds.
fn generated(dir: &Path, scheme: CodeScheme, opts: Options) -> (PathBuf, testdata::Generated) {
    let g = testdata::generate(scheme, &[], &opts);
    let path = dir.join(testdata::file_name(scheme));
    std::fs::write(&path, &g.text).unwrap();
    (path, g)
}

/// The report's value after `label` in the block of `path` (`  label: value`).
fn field(stdout: &str, path: &Path, label: &str) -> String {
    let block = stdout
        .split_once(&format!("{}\n", path.display()))
        .unwrap_or_else(|| panic!("no report for {}: {stdout}", path.display()))
        .1;
    block
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label} in {block}"))
        .trim()
        .to_owned()
}

#[test]
fn reports_each_file_truthfully_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        rows: 20_000,
        bom: true,
        ..Options::default()
    };
    let (read_v2, g2) = generated(dir.path(), CodeScheme::ReadV2, opts);
    let (ctv3, g3) = generated(
        dir.path(),
        CodeScheme::Ctv3,
        Options {
            crlf: false,
            bom: false,
            ..opts
        },
    );
    let (local, gl) = generated(
        dir.path(),
        CodeScheme::EmisLocal,
        Options { rows: 500, ..opts },
    );
    let out = run(&["terminology", "check"], &[&read_v2, &ctv3, &local]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    for (path, g, scheme) in [
        (&read_v2, &g2, "Read v2 -> SNOMED CT"),
        (&ctv3, &g3, "CTV3 -> SNOMED CT"),
        (&local, &gl, "EMIS local -> SNOMED CT"),
    ] {
        assert_eq!(field(&stdout, path, "scheme:"), scheme);
        assert_eq!(field(&stdout, path, "rows read:"), g.rows.to_string());
        let mapped = g.expect.values().filter(|v| v.is_some()).count();
        assert!(
            field(&stdout, path, "codes mapped:").starts_with(&format!("{mapped} (")),
            "{stdout}"
        );
        assert_eq!(
            field(&stdout, path, "several candidates:"),
            format!(
                "{} (codes whose maps name more than one concept)",
                g.candidates
            )
        );
        let assured = g.expect.values().flatten().filter(|v| v.1).count();
        assert!(
            assured > 0 && assured < mapped,
            "the files mix assured and unassured maps"
        );
        let share = field(&stdout, path, "assured:");
        let percent: f64 = share.split('%').next().unwrap().parse().unwrap();
        assert!(percent > 50.0 && percent < 100.0, "{share}");
    }
    // The candidates are listed (the first 20 without --all), each with its choice.
    assert!(stdout.contains("(assured) over "), "{stdout}");
    assert!(stdout.contains("more (--all lists them)"), "{stdout}");
    let all = text(&run(&["terminology", "check", "--all"], &[&read_v2]).stdout);
    assert_eq!(
        all.lines().filter(|l| l.contains(" chose ")).count(),
        g2.candidates
    );
}

#[test]
fn a_malformed_file_exits_2_naming_its_line_and_the_good_ones_are_still_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = generated(dir.path(), CodeScheme::Ctv3, Options::default());
    let g = testdata::generate(CodeScheme::ReadV2, &[], &Options::default());
    let mut lines: Vec<String> = g.text.split("\r\n").map(str::to_owned).collect();
    let mut fields: Vec<&str> = lines[41].split('\t').collect();
    *fields.last_mut().unwrap() = "2"; // MapStatus, on line 42 (the header is line 1)
    lines[41] = fields.join("\t");
    let bad = dir.path().join("rcsctmap2_uk_broken.txt");
    std::fs::write(&bad, lines.join("\r\n")).unwrap();
    let out = run(&["terminology", "check"], &[&bad, &good]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:42: MapStatus is \"2\": expected 0 or 1",
            bad.display()
        )),
        "{stderr}"
    );
    assert_eq!(
        field(&text(&out.stdout), &good, "scheme:"),
        "CTV3 -> SNOMED CT"
    );
    // A file with no header naming a code column says what it expected.
    std::fs::write(&bad, "Code\tSnomed\r\nH33..\t195967001\r\n").unwrap();
    let out = run(&["terminology", "check"], &[&bad]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(":1: the header names no source-code column"));
}

#[test]
fn check_config_loads_the_configured_maps_and_refuses_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for f in std::fs::read_dir(repo.join("config")).unwrap() {
        let f = f.unwrap();
        if f.path().is_file() {
            std::fs::copy(f.path(), dir.path().join(f.file_name())).unwrap();
        }
    }
    std::fs::create_dir(dir.path().join("terminology")).unwrap();
    let (read_v2, _) = generated(
        &dir.path().join("terminology"),
        CodeScheme::ReadV2,
        Options::default(),
    );
    let gateway = dir.path().join("gateway.toml");
    let text_of = std::fs::read_to_string(&gateway).unwrap();
    std::fs::write(
        &gateway,
        format!(
            "{text_of}\n[terminology]\nread_v2 = [\"terminology/{}\"]\n",
            read_v2.file_name().unwrap().to_string_lossy()
        ),
    )
    .unwrap();
    let config = gateway.to_string_lossy().into_owned();
    let out = run(&["check-config", "--config", &config], &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("terminology: Read v2: "), "{stdout}");
    assert!(stdout.contains("(1 files)"), "{stdout}");
    assert!(
        stdout.contains("terminology: CTV3: ") && stdout.contains("(embedded)"),
        "{stdout}"
    );
    std::fs::write(
        &read_v2,
        "MapId\tReadCode\tConceptId\tMapStatus\nm1\tH33..\t195967001\t1\nm2\tG20..\tnot-an-id\t1\n",
    )
    .unwrap();
    let out = run(&["check-config", "--config", &config], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(":3: ConceptId \"not-an-id\" is not a SNOMED CT id"),
        "{stderr}"
    );
}

/// A `serve` config in `dir` whose `[terminology]` names `read_v2` (reload on SIGHUP only).
fn serve_config(dir: &Path, read_v2: &Path) -> PathBuf {
    let terminology = format!(
        "[terminology]\nread_v2 = [\"{}\"]\nreload_interval_secs = 0\n",
        read_v2.display()
    );
    support::serve_config(dir, &terminology).0
}

/// Waits (at most 20 s) until the log at `path` holds `needle`; returns the log.
fn wait_for_log(path: &Path, needle: &str) -> String {
    for _ in 0..200 {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(needle) {
            return log;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!(
        "the log never said {needle:?}: {}",
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

fn hangup(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[cfg(unix)]
#[test]
fn serve_reloads_on_sighup_keeping_the_running_maps_when_the_file_is_broken() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let (read_v2, g) = generated(dir.path(), CodeScheme::ReadV2, Options::default());
    let config = serve_config(dir.path(), &read_v2);
    let log_path = dir.path().join("gateway.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gp-gateway"))
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(&mut child);
    let log = wait_for_log(&log_path, "gp-gateway ready");
    assert!(log.contains("\"message\":\"terminology map\""), "{log}");
    assert!(log.contains(&format!("\"rows\":{}", g.rows)), "{log}");

    // Broken: a changed file alone reloads nothing (SIGHUP only); SIGHUP refuses it.
    let mut file = std::fs::read_to_string(&read_v2).unwrap();
    file.push_str("{X}\tH33..\t00\t195967001\t\t1\t2026-13-01\t1\r\n");
    std::fs::write(&read_v2, &file).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        !std::fs::read_to_string(&log_path)
            .unwrap()
            .contains("NOT reloaded")
    );
    hangup(guard.0);
    let log = wait_for_log(&log_path, "terminology maps NOT reloaded");
    let line = g.rows + 2;
    assert!(
        log.contains(&format!(
            ":{line}: EffectiveDate is \\\"2026-13-01\\\": not a calendar date"
        )),
        "{log}"
    );

    // Mended: the next SIGHUP takes it.
    file.truncate(file.len() - "{X}\tH33..\t00\t195967001\t\t1\t2026-13-01\t1\r\n".len());
    std::fs::write(&read_v2, &file).unwrap();
    hangup(guard.0);
    wait_for_log(&log_path, "\"message\":\"terminology maps reloaded\"");
    drop(guard);

    // A malformed file at start: serve refuses to start, naming the line.
    std::fs::write(
        &read_v2,
        "MapId\tReadCode\tConceptId\tMapStatus\nm1\tH33..\t195967001\tyes\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gp-gateway"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(":2: MapStatus is \"yes\": expected 0 or 1"),
        "{stderr}"
    );
}

/// Kills the child when the test ends, passing or not.
struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
