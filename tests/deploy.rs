//! The systemd unit in deploy/: systemd's own checker finds nothing wrong with it, its
//! hardening keeps systemd's exposure score low, and what it hands the binary (command
//! line, credentials, environment) is what the binary understands. Needs `systemd-analyze`
//! (Debian package `systemd`, which scripts/test installs when missing); no database.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{wc_retention, write_config};

const UNIT_NAME: &str = "wc-retention.service";
const UNIT_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/wc-retention.service");
/// Where the README tells the operator to install the binary.
const INSTALLED_BINARY: &str = "/usr/local/bin/wc-retention";
/// `systemd-analyze security --offline=true` scores the unit 1.1 on systemd 252 (Debian 12),
/// and 1.2 to 1.8 with one of PrivateUsers=, PrivateMounts=, ProtectProc=, the second
/// SystemCallFilter= or RestrictNamespaces= left out. Settings the score does not weigh are
/// checked by name below. Another systemd version may weigh the checks differently: then
/// read the ✗ lines before moving the bound.
const MAX_EXPOSURE: f64 = 1.1;

fn unit_text() -> String {
    std::fs::read_to_string(UNIT_PATH).unwrap_or_else(|e| panic!("read {UNIT_PATH}: {e}"))
}

/// The unit as installed, but starting the binary this build made: verify checks that
/// ExecStart names an executable, and the installed path does not exist on a test host.
fn test_unit(text: &str) -> String {
    let exec = format!("ExecStart={INSTALLED_BINARY} ");
    assert_eq!(
        text.matches(&exec).count(),
        1,
        "the unit should have one {exec:?}…: the README installs the binary there"
    );
    text.replace(&exec, &format!("ExecStart={} ", env!("CARGO_BIN_EXE_wc-retention")))
}

/// Writes `text` as `wc-retention.service` into `dir`.
fn write_unit(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join(UNIT_NAME);
    std::fs::write(&path, text).unwrap();
    path
}

/// `systemd-analyze`, or a failure saying how to get it: never a silent pass.
fn systemd_analyze() -> Command {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|dir| dir.join("systemd-analyze"))
        .find(|p| p.is_file());
    match found {
        Some(path) => {
            let mut cmd = Command::new(path);
            cmd.env("SYSTEMD_PAGER", "cat").env("SYSTEMD_COLORS", "0");
            cmd
        }
        None => panic!(
            "systemd-analyze not found: these tests check deploy/wc-retention.service with it. \
             Install it (apt-get install systemd); scripts/test does so when run as root"
        ),
    }
}

/// What `systemd-analyze verify` says about the unit `text`, `Err` when anything. Lines
/// about other units (the host's own, loaded as dependencies) are not ours to fix and
/// are ignored; a failing exit status always counts.
fn verify(text: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_unit(dir.path(), text);
    let out = systemd_analyze()
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze verify");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dir_name = dir.path().to_string_lossy();
    let ours: Vec<&str> = all
        .lines()
        .filter(|l| l.contains(UNIT_NAME) || l.contains(dir_name.as_ref()))
        .collect();
    if out.status.success() && ours.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "systemd-analyze verify ({}) on {UNIT_NAME}:\n{}\nfull output:\n{all}",
            out.status,
            ours.join("\n")
        ))
    }
}

/// `text` with its one line `key=…` replaced by `line`.
fn replace_line(text: &str, key: &str, line: &str) -> String {
    let prefix = format!("{key}=");
    let found = text.lines().filter(|l| l.starts_with(&prefix)).count();
    assert_eq!(found, 1, "lines {prefix}… in the unit");
    text.lines()
        .map(|l| if l.starts_with(&prefix) { line } else { l })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn systemd_analyze_verify_finds_nothing_wrong_with_the_unit() {
    if let Err(problems) = verify(&test_unit(&unit_text())) {
        panic!("{problems}");
    }
}

/// The check above would pass vacuously if verify said nothing about a broken unit.
#[test]
fn systemd_analyze_verify_catches_a_broken_unit() {
    let unit = test_unit(&unit_text());
    let built = format!("ExecStart={} ", env!("CARGO_BIN_EXE_wc-retention"));
    let cases = [
        ("a misspelt key", replace_line(&unit, "Type", "Typ=notify")),
        (
            "a bad value",
            replace_line(&unit, "ProtectSystem", "ProtectSystem=strickt"),
        ),
        (
            "a bad time span",
            replace_line(&unit, "WatchdogSec", "WatchdogSec=2 fortnights"),
        ),
        (
            "a missing dependency",
            unit.replacen("[Unit]\n", "[Unit]\nRequires=wcr-no-such.service\n", 1),
        ),
        (
            "a missing binary",
            unit.replace(&built, "ExecStart=/nonexistent/wc-retention "),
        ),
    ];
    for (what, broken) in cases {
        assert_ne!(broken, unit, "{what}: nothing replaced");
        assert!(verify(&broken).is_err(), "{what} was not reported");
    }
}

#[test]
fn systemd_analyze_security_scores_the_unit_as_well_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_unit(dir.path(), &test_unit(&unit_text()));
    let out = systemd_analyze()
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze security");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let marker = format!("Overall exposure level for {UNIT_NAME}:");
    let score: f64 = stdout
        .lines()
        .find_map(|l| l.split_once(&marker))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no score in systemd-analyze security's output:\n{stdout}\n{stderr}"));
    println!("systemd-analyze security --offline=true: exposure {score} (at most {MAX_EXPOSURE})");
    let exposed: Vec<&str> = stdout.lines().filter(|l| l.starts_with('✗')).collect();
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}; settings that count:\n{}",
        exposed.join("\n")
    );
}

/// The settings the daemon's contract and the hardening rely on, beyond the score: a
/// change to one of them is a decision, made here too.
#[test]
fn the_unit_keeps_its_contract_and_hardening() {
    let text = unit_text();
    let lines: Vec<&str> = text.lines().collect();
    for want in [
        "Type=notify",
        "NotifyAccess=main",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "User=wc-retention",
        "StateDirectory=wc-retention wc-retention/exports",
        "StateDirectoryMode=0700",
        "UMask=0077",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "MemoryDenyWriteExecute=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
        "LoadCredential=db_password:/etc/wc-retention/credentials/db_password",
        "LoadCredential=pepper:/etc/wc-retention/credentials/pepper",
    ] {
        assert!(lines.contains(&want), "{want:?} is not a line of {UNIT_PATH}");
    }
    for key in ["WatchdogSec", "TimeoutStartSec", "TimeoutStopSec"] {
        assert_eq!(settings(&text, key, false).len(), 1, "{key}= in {UNIT_PATH}");
    }
    // The sysusers file creates the account the unit runs as.
    let sysusers =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/wc-retention.sysusers")).unwrap();
    assert!(sysusers.lines().any(|l| l.starts_with("u wc-retention ")), "{sysusers}");
}

/// `key=value` settings of the unit; `commented` selects the `#key=` lines the operator
/// may uncomment instead of the active ones.
fn settings<'a>(text: &'a str, key: &str, commented: bool) -> Vec<&'a str> {
    let prefix = format!("{}{key}=", if commented { "#" } else { "" });
    text.lines().filter_map(|l| l.strip_prefix(prefix.as_str())).collect()
}

#[test]
fn the_command_line_is_one_the_binary_accepts() {
    let text = unit_text();
    let exec = settings(&text, "ExecStart", false);
    assert_eq!(exec.len(), 1, "{exec:?}");
    let argv: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(argv[0], INSTALLED_BINARY);
    // The same arguments with a config path that does not exist: a parsed command line
    // gets as far as loading the config.
    let missing = "/nonexistent/wc-retention-deploy-test.toml";
    let args: Vec<&str> = argv[1..]
        .iter()
        .map(|a| if a.ends_with(".toml") { missing } else { a })
        .collect();
    assert!(args.contains(&missing), "no --config in {argv:?}");
    let run = wc_retention(&args, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("config file {missing} does not exist")),
        "{args:?} did not get as far as the config:\n{}",
        run.stderr
    );
    assert_eq!(settings(&text, "ExecReload", false), ["/bin/kill -HUP $MAINPID"]);
}

/// Each credential the unit loads is handed to the service through an environment variable
/// naming a config key, and the binary accepts them all (including the commented REST
/// ones, together with a `[rest]` section, as the unit's comment says).
#[test]
fn credentials_reach_the_config_keys_the_binary_knows() {
    let text = unit_text();
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    let mut env: Vec<(String, String)> = Vec::new();
    for commented in [false, true] {
        let ids: Vec<&str> = settings(&text, "LoadCredential", commented)
            .iter()
            .map(|c| c.split_once(':').expect("LoadCredential=ID:PATH").0)
            .collect();
        let vars = settings(&text, "Environment", commented);
        for id in &ids {
            let value = match *id {
                "pepper" => "0123456789abcdef0123456789abcdef0123456789abcdef".to_owned(),
                other => format!("test-{other}-value"),
            };
            let file = creds.join(id);
            std::fs::write(&file, format!("{value}\n")).unwrap();
            // As systemd provides them: readable by the service's user only.
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
            assert!(
                vars.iter().any(|v| v.ends_with(&format!("=%d/{id}"))),
                "credential {id} is loaded but no Environment= line points the service at it"
            );
        }
        for var in vars {
            let (name, value) = var.split_once('=').unwrap();
            if let Some(id) = value.strip_prefix("%d/") {
                assert!(ids.contains(&id), "{name} names credential {id}, which is not loaded");
            }
            assert!(name.starts_with("WC_RETENTION__"), "{name}");
            env.push((name.to_owned(), value.replace("%d", creds.to_str().unwrap())));
        }
    }
    assert!(env.iter().any(|(k, _)| k == "WC_RETENTION__DATABASE__PASSWORD_FILE"));
    assert!(env.iter().any(|(k, _)| k == "WC_RETENTION__REQUESTS__PEPPER_FILE"));

    // Nothing listens on port 1: a config the binary accepts ends in exit code 3
    // (unreachable), one it rejects in 2 naming the key.
    let cfg = write_config(
        &dir,
        "[database]\nurl = \"mysql://wc_retention@127.0.0.1:1/wordpress\"\nconnect_timeout_secs = 2\n\n\
         [rest]\nurl = \"https://shop.example/\"\n",
    );
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let run = wc_retention(&["--config", &cfg, "check"], &env);
    assert_eq!(run.code, 3, "{env:?}:\n{}", run.all_output());
    assert!(!run.stderr.contains("readable by group or others"), "{}", run.stderr);
}
