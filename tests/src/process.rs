//! A role binary running as a child process, its stdout and stderr gathered into one string.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::hosts::Host;
use crate::{eventually, role_binary};

/// A role binary running as a child process; killed when dropped.
pub struct RoleProcess {
    child: Child,
    output: Arc<Mutex<String>>,
    /// The tasks copying stdout and stderr; they end when the child closes its pipes.
    readers: Vec<JoinHandle<()>>,
}

impl RoleProcess {
    /// Starts role binary `role` with only `env` in its environment and `RUST_LOG=info`.
    pub fn spawn(role: &str, env: &[(&str, &str)]) -> RoleProcess {
        RoleProcess::spawn_with_args(role, &[], env)
    }

    /// Starts role binary `role` with the flags `args`, only `env` in its environment and
    /// `RUST_LOG=info`.
    pub fn spawn_with_args(role: &str, args: &[&str], env: &[(&str, &str)]) -> RoleProcess {
        Self::spawn_from(Command::new(role_binary(role)), role, args, env)
    }

    /// Starts role binary `role` on test host `host` (in its network namespace), with only
    /// `env` in its environment and `RUST_LOG=info`. Its process id is the role's own, so
    /// signals reach the role.
    pub fn spawn_on(host: &Host, role: &str, env: &[(&str, &str)]) -> RoleProcess {
        Self::spawn_from(
            Command::from(host.command(role_binary(role))),
            role,
            &[],
            env,
        )
    }

    fn spawn_from(
        mut command: Command,
        role: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> RoleProcess {
        let mut child = command
            .args(args)
            .env_clear()
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start the {role} binary: {err}"));
        let output = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            tokio::spawn(gather(child.stdout.take().unwrap(), Arc::clone(&output))),
            tokio::spawn(gather(child.stderr.take().unwrap(), Arc::clone(&output))),
        ];
        RoleProcess {
            child,
            output,
            readers,
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Everything the process wrote so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// How many times `text` occurs in the output so far.
    pub fn count(&self, text: &str) -> usize {
        self.output().matches(text).count()
    }

    /// Waits until the output contains `text`.
    pub async fn wait_for_output(&self, text: &str, timeout: Duration) {
        eventually(timeout, &format!("{text:?} in the output"), || {
            std::future::ready(self.output().contains(text).then_some(()))
        })
        .await;
    }

    /// Sends `SIG<signal>` with kill(1): the workspace forbids the unsafe code `libc::kill` needs.
    pub fn signal(&self, signal: &str) {
        let pid = self
            .child
            .id()
            .expect("the role is still running")
            .to_string();
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed: {status}");
    }

    /// Waits up to `timeout` for the process to exit and its pipes to drain; returns its
    /// status and output.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> (ExitStatus, String) {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("did not exit within {timeout:?}:\n{}", self.output()))
            .expect("wait for the role");
        for reader in self.readers.drain(..) {
            reader.await.expect("copy the role's output");
        }
        (status, self.output())
    }
}

impl Drop for RoleProcess {
    /// Shows what the role wrote when a test fails while it runs; the child is killed on drop.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("output of the role so far:\n{}", self.output());
        }
    }
}

/// Copies `pipe` into `output`, line by line, until the process closes it.
async fn gather(pipe: impl AsyncRead + Unpin, output: Arc<Mutex<String>>) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut output = output.lock().unwrap();
        output.push_str(&line);
        output.push('\n');
    }
}
