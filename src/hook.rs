//! `apply.post_run_command`: the operator's command run after a run changed something,
//! typically `wp cache flush`, so a persistent object cache stops serving old values.
//! It runs without a shell. Its output goes nowhere: it is the operator's program and may
//! print anything, personal data included (a PHP warning quoting a row); the exit status
//! is what is reported.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("apply.post_run_command {program:?} could not be started: {reason}")]
    Start { program: String, reason: String },
    #[error("apply.post_run_command {program:?} did not finish within {secs} s (apply.post_run_timeout_secs) and was killed")]
    Timeout { program: String, secs: u64 },
    #[error(
        "apply.post_run_command {program:?} failed ({status}); run it by hand as the service's user to see its output"
    )]
    Failed { program: String, status: String },
}

/// Runs `command` (program and arguments) and waits at most `timeout`.
pub async fn run(command: &[String], timeout: Duration) -> Result<(), HookError> {
    let Some((program, args)) = command.split_first() else {
        return Ok(());
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| HookError::Start {
            program: program.clone(),
            reason: e.to_string(),
        })?;
    let status = match tokio::time::timeout(timeout, child.wait()).await {
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
        Ok(Ok(status)) => status,
    };
    if status.success() {
        return Ok(());
    }
    Err(HookError::Failed {
        program: program.clone(),
        status: status.to_string(),
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
        // What the command prints may name anyone: none of it is kept.
        let e = run(
            &cmd(&[
                "sh",
                "-c",
                "echo jan@example.nl; echo 'Error: jan@example.nl' >&2; exit 3",
            ]),
            secs,
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "apply.post_run_command \"sh\" failed (exit status: 3); run it by hand as the service's user to see its output"
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
