//! `apply.post_run_command`: the operator's command run after a run changed something,
//! typically `wp cache flush`, so a persistent object cache stops serving old values.
//! It runs without a shell; its output is not logged (it is the operator's program and
//! may print anything), except the last line of its error output when it fails.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("apply.post_run_command {program:?} could not be started: {reason}")]
    Start { program: String, reason: String },
    #[error("apply.post_run_command {program:?} did not finish within {secs} s (apply.post_run_timeout_secs) and was killed")]
    Timeout { program: String, secs: u64 },
    #[error("apply.post_run_command {program:?} failed ({status}){}", last_line.as_ref().map(|l| format!(": {l}")).unwrap_or_default())]
    Failed {
        program: String,
        status: String,
        last_line: Option<String>,
    },
}

/// Runs `command` (program and arguments) and waits at most `timeout`.
pub async fn run(command: &[String], timeout: Duration) -> Result<(), HookError> {
    let Some((program, args)) = command.split_first() else {
        return Ok(());
    };
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| HookError::Start {
            program: program.clone(),
            reason: e.to_string(),
        })?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => {
            return Err(HookError::Timeout {
                program: program.clone(),
                secs: timeout.as_secs(),
            })
        }
        Ok(Err(e)) => {
            return Err(HookError::Start {
                program: program.clone(),
                reason: e.to_string(),
            })
        }
        Ok(Ok(output)) => output,
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last_line = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(|l| l.chars().take(200).collect());
    Err(HookError::Failed {
        program: program.clone(),
        status: output.status.to_string(),
        last_line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn success_failure_and_timeout() {
        let secs = Duration::from_secs(5);
        run(&cmd(&["true"]), secs).await.unwrap();
        let e = run(
            &cmd(&["sh", "-c", "echo noise; echo 'Error: no cache' >&2; exit 3"]),
            secs,
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "apply.post_run_command \"sh\" failed (exit status: 3): Error: no cache"
        );
        let e = run(&cmd(&["sleep", "5"]), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(e, HookError::Timeout { .. }), "{e}");
        let e = run(&cmd(&["/nonexistent/wp"]), secs).await.unwrap_err();
        assert!(e
            .to_string()
            .starts_with("apply.post_run_command \"/nonexistent/wp\" could not be started"));
    }
}
