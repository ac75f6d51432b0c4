//! Restarting by re-executing the launcher: same PID (systemd keeps tracking it), same
//! arguments and environment, a fresh interpreter (new extensions load cleanly).

use std::os::unix::process::CommandExt;

/// Replace this process with a fresh launcher. Returns only if exec failed.
pub fn reexec() {
    let mut args = std::env::args_os();
    let Some(program) = std::env::current_exe()
        .ok()
        .or_else(|| args.next().map(Into::into))
    else {
        tracing::error!("cannot restart: the launcher's own path is unknown");
        return;
    };
    let rest: Vec<_> = std::env::args_os().skip(1).collect();
    tracing::info!("restarting the webui");
    let error = std::process::Command::new(&program).args(rest).exec();
    tracing::error!(%error, program = %program.display(), "cannot restart");
}
