//! A MariaDB server of one test's own, for faults the suite's shared server must not
//! suffer: stopping it, crashing it, starting it again on the same data and port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::{Opts, Pool};

/// Long enough for a server to start or recover on a busy 2-core machine.
const PATIENCE: Duration = Duration::from_secs(90);

pub struct PrivateServer {
    dir: tempfile::TempDir,
    port: u16,
    options: Vec<String>,
    child: Option<Child>,
}

fn find(names: &[&str], dirs: &[&str]) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    for name in names {
        for dir in path.split(':').chain(dirs.iter().copied()) {
            let candidate = Path::new(dir).join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("none of {names:?} is installed (scripts/test installs mariadb-server)");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

impl PrivateServer {
    /// A new server with a small buffer pool; `options` are added to its command line
    /// (e.g. `--innodb-lock-wait-timeout=2`).
    pub async fn start(options: &[&str]) -> PrivateServer {
        let dir = tempfile::tempdir().unwrap();
        let install = find(&["mariadb-install-db", "mysql_install_db"], &["/usr/bin"]);
        let mut cmd = Command::new(install);
        cmd.arg("--no-defaults");
        if is_root() {
            cmd.arg("--user=root");
        }
        // Servers installed side by side must not share temporary files.
        let out = cmd
            .env("TMPDIR", dir.path())
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = PrivateServer {
            dir,
            port,
            options: options.iter().map(|o| o.to_string()).collect(),
            child: None,
        };
        server.resume().await;
        server
    }

    /// The URL of `db` on this server as root ("" for none).
    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    /// Starts the server on its data dir and port; returns once it answers.
    pub async fn resume(&mut self) {
        let server = find(&["mariadbd", "mysqld"], &["/usr/sbin"]);
        let d = self.dir.path();
        let mut cmd = Command::new(server);
        cmd.arg("--no-defaults");
        if is_root() {
            cmd.arg("--user=root");
        }
        cmd.arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", d.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", d.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", d.join("error.log").display()))
            .args([
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
                "--innodb-log-file-size=16M",
            ])
            .args(&self.options)
            .env("TMPDIR", d)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn().expect("start a private mariadbd"));
        let deadline = Instant::now() + PATIENCE;
        loop {
            let pool = Pool::new(Opts::from_url(&self.url("")).unwrap());
            let up = pool.get_conn().await.is_ok();
            pool.disconnect().await.ok();
            if up {
                return;
            }
            let log = std::fs::read_to_string(d.join("error.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "the private server did not start:\n{log}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Shuts the server down (SIGTERM, as systemctl stop does) and waits for it.
    pub fn pause(&mut self) {
        self.stop("TERM");
    }

    /// Kills the server (SIGKILL, as a crash or the OOM killer would): the next start
    /// recovers from InnoDB's log.
    pub fn crash(&mut self) {
        self.stop("KILL");
    }

    fn stop(&mut self, signal: &str) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status();
            child.wait().unwrap();
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
