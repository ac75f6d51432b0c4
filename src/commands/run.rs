//! `stable-diffusion-webui [OPTIONS] [WEBUI ARGS...]`: run the webui.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::Cli;
use crate::commands::{Base, Prepared};
use crate::control;
use crate::embed;
use crate::network::NetworkPlan;
use crate::proxy::{self, ProxyConfig};

pub fn run(cli: Cli, base: Base) -> anyhow::Result<ExitCode> {
    let prepared = Prepared::new(&cli.launcher, base)?;
    if cli.launcher.webui_help {
        let config = prepared.launch_config("webui_help", Vec::new(), false);
        let code = embed::run_webui(&prepared.shim_dir, &serde_json::to_string(&config)?)?;
        return Ok(exit_code(code));
    }
    crate::data::prepare(&prepared.dirs.data)?;
    let settings = crate::commands::settings::prepare_start(&cli.launcher, &prepared.dirs.data)?;
    let plan = NetworkPlan::new(&cli.network)?;
    let mut argv = cli.webui_args.clone();
    // Upstream downloads SD 1.5 (4 GB, unverified, not resumable) synchronously when no
    // checkpoint exists; `models pull` does that verified, so say how instead.
    if !argv.iter().any(|a| a == "--no-download-sd-model") {
        argv.push("--no-download-sd-model".to_owned());
    }
    let chose_ckpt = argv.iter().any(|a| {
        let name = a.split_once('=').map_or(a.as_str(), |(name, _)| name);
        name == "--ckpt" || name == "--ckpt-dir"
    });
    if !chose_ckpt && let Some(hint) = crate::models::first_start_hint(&prepared.dirs.data) {
        tracing::warn!("{hint}");
    }
    argv.extend([
        "--data-dir".to_owned(),
        prepared.dirs.data.display().to_string(),
    ]);
    argv.extend(plan.webui_args());
    let mut config = prepared.launch_config("run", argv, plan.non_local);
    config.settings = settings;
    let started = std::time::Instant::now();
    let root_view = crate::views::root::build(
        &prepared.tree.root,
        &prepared.dirs.data,
        &prepared.dirs.cache,
    )?;
    tracing::debug!(view = %root_view.display(), elapsed = ?started.elapsed(), "root view built");
    config.root_view = Some(root_view);
    if let Some(managed) = &prepared.managed_extensions {
        let views = crate::views::managed_extensions::build(managed, &prepared.dirs.data)?;
        config.managed_extensions_view = Some(views);
    }
    let config_json = serde_json::to_string(&config)?;
    tracing::info!(
        webui = %prepared.tree.root.display(),
        data = %prepared.dirs.data.display(),
        python = %prepared.python.executable.display(),
        "starting the webui"
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("launcher")
        .enable_all()
        .build()
        .context("Failed to start the async runtime")?;
    // Bound before the webui starts: a busy port fails now, not after a minute of loading.
    let proxy = runtime.block_on(proxy::bind(ProxyConfig {
        listen: plan.public.clone(),
        backend: plan.backend,
        subpath: plan.subpath.clone(),
        tls: plan.tls.clone(),
        gradio_auth: uses_gradio_auth(&cli.webui_args),
    }))?;
    let forwarding = proxy.forwarding();
    let (stop_proxy, proxy_stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(proxy.serve(control::get().subscribe(), async {
        let _ = proxy_stopped.await;
    }));
    runtime.spawn(forward_sigterm());
    runtime.spawn(announce_ready(plan, forwarding));

    // Python must own the process's main thread (upstream installs a SIGINT handler).
    let code = embed::run_webui(&prepared.shim_dir, &config_json)?;
    let _ = stop_proxy.send(());
    let stopped = runtime
        .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(5), serving).await });
    if !matches!(stopped, Ok(Ok(Ok(())))) {
        tracing::warn!("the proxy did not stop cleanly");
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if control::get().restart_requested() {
        crate::restart::reexec();
        anyhow::bail!("Failed to restart the launcher");
    }
    Ok(exit_code(code))
}

/// gradio login protects `/file=`; the proxy must then ask gradio about each session.
fn uses_gradio_auth(webui_args: &[String]) -> bool {
    webui_args.iter().any(|arg| {
        let name = arg.split_once('=').map_or(arg.as_str(), |(name, _)| name);
        name == "--gradio-auth" || name == "--gradio-auth-path"
    })
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// SIGTERM (systemd, docker stop) stops the webui exactly like Ctrl-C does.
async fn forward_sigterm() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        tracing::warn!("cannot listen for SIGTERM");
        return;
    };
    while term.recv().await.is_some() {
        tracing::info!("SIGTERM: stopping the webui");
        control::get().stop(false);
    }
}

/// Tell the user where the UI is each time the webui becomes ready (again, after a UI
/// reload), and open it once if asked.
async fn announce_ready(plan: NetworkPlan, mut forwarding: tokio::sync::watch::Receiver<bool>) {
    let mut times = 0;
    while forwarding.changed().await.is_ok() {
        if !*forwarding.borrow_and_update() {
            continue;
        }
        times += 1;
        let url = plan.public_url();
        // systemd Type=notify: ready means upstream's app-started point, not an open port.
        if let Err(error) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            tracing::debug!(%error, "sd_notify");
        }
        if times == 1 {
            tracing::info!("webui ready at {url}");
            if plan.autolaunch {
                crate::browser::open(&url);
            }
        } else {
            tracing::info!("webui ready at {url} (reloaded)");
        }
    }
}
