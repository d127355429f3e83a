//! `tally-agent service …` on Windows: the thin layer between the service control manager
//! (through the `windows-service` crate) and the platform-neutral [`super`] module, which holds
//! everything that can be tested on Linux. Nothing here decides; it registers, forwards the
//! manager's controls to the [`Controller`] and reports its statuses.

use std::ffi::{OsStr, OsString};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

use super::{
    Controller, DISPLAY_NAME, LOG_FILE_BYTES, LOG_FILES_KEPT, Phase, SERVICE_ACCOUNT, SERVICE_NAME,
    ServiceCommand, ServicePaths, Status,
};

define_windows_service!(ffi_service_main, service_main);

/// Where the service's files are, from `service run --root` (set before the dispatcher starts).
static SERVICE_PATHS: OnceLock<ServicePaths> = OnceLock::new();

/// Runs one `service` subcommand; returns the process's exit code.
pub fn execute(command: ServiceCommand) -> anyhow::Result<u8> {
    match command {
        ServiceCommand::Install => install()?,
        ServiceCommand::Uninstall => uninstall()?,
        ServiceCommand::Start => {
            open(ServiceAccess::START)?
                .start::<&OsStr>(&[])
                .context("cannot start the service")?;
            println!("{SERVICE_NAME} is starting");
        }
        ServiceCommand::Stop => {
            open(ServiceAccess::STOP)?
                .stop()
                .context("cannot stop the service")?;
            println!("{SERVICE_NAME} is stopping (in-flight requests finish first)");
        }
        ServiceCommand::Status => {
            let status = open(ServiceAccess::QUERY_STATUS)?
                .query_status()
                .context("cannot query the service")?;
            println!(
                "{SERVICE_NAME}: {:?}, exit code {:?}, process {:?}",
                status.current_state, status.exit_code, status.process_id
            );
        }
        ServiceCommand::Run { root } => {
            let _ = SERVICE_PATHS.set(ServicePaths::at(root));
            service_dispatcher::start(SERVICE_NAME, ffi_service_main)
                .context("not started by the service control manager (use `service start`)")?
        }
    }
    Ok(0)
}

fn manager(access: ServiceManagerAccess) -> anyhow::Result<ServiceManager> {
    ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT | access)
        .context("cannot open the service control manager (run as Administrator)")
}

fn open(access: ServiceAccess) -> anyhow::Result<windows_service::service::Service> {
    manager(ServiceManagerAccess::empty())?
        .open_service(SERVICE_NAME, access)
        .with_context(|| format!("cannot open the service {SERVICE_NAME} (is it installed?)"))
}

fn install() -> anyhow::Result<()> {
    let paths = ServicePaths::from_env();
    let wrote = paths
        .install_sample_config()
        .with_context(|| format!("cannot write {}", paths.config().display()))?;
    let info = ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: std::env::current_exe().context("cannot find this executable")?,
        launch_arguments: vec![
            "service".into(),
            "run".into(),
            "--root".into(),
            paths.root.clone().into_os_string(),
        ],
        dependencies: vec![],
        account_name: Some(SERVICE_ACCOUNT.into()),
        account_password: None,
    };
    let service = manager(ServiceManagerAccess::CREATE_SERVICE)?
        .create_service(&info, ServiceAccess::CHANGE_CONFIG | ServiceAccess::START)
        .context("cannot register the service")?;
    service
        .set_description("Durable capture of a warehouse's stock events, synced to tally-central.")
        .context("cannot set the service's description")?;
    // Restart after 2 s, 10 s, then every minute; a failure-free day resets the count. A stop
    // with a non-zero exit code (a bad configuration exits 64) counts as a failure too.
    let restart = |secs| ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(secs),
    };
    service
        .update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(86_400)),
            reboot_msg: None,
            command: None,
            actions: Some(vec![restart(2), restart(10), restart(60)]),
        })
        .context("cannot set the service's recovery actions")?;
    if let Err(error) = service.set_failure_actions_on_non_crash_failures(true) {
        // Crashes still restart it; Wine, for one, lacks this setting.
        eprintln!("warning: a stop with an error code will not restart the service: {error}");
    }
    // The folder holds the tokens: only Administrators, SYSTEM and the service's own account.
    let root = paths.root.display().to_string();
    let grant = format!("{SERVICE_ACCOUNT}:(OI)(CI)M");
    let icacls = std::process::Command::new("icacls")
        .args([root.as_str(), "/inheritance:r", "/grant:r"])
        .args([
            "*S-1-5-32-544:(OI)(CI)F",
            "*S-1-5-18:(OI)(CI)F",
            grant.as_str(),
        ])
        .status()
        .context("cannot run icacls")?;
    anyhow::ensure!(
        icacls.success(),
        "icacls could not set the rights on {root}"
    );
    println!(
        "{SERVICE_NAME} is installed (automatic start, restarts on failure). {} {}, then run: tally-agent service start",
        if wrote { "Fill in" } else { "Check" },
        paths.config().display()
    );
    Ok(())
}

fn uninstall() -> anyhow::Result<()> {
    let service = open(ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE)?;
    if service.query_status()?.current_state != ServiceState::Stopped {
        // Deletion waits for the stop; the agent finishes its in-flight requests first.
        let _ = service.stop();
    }
    service.delete().context("cannot unregister the service")?;
    println!(
        "{SERVICE_NAME} is unregistered; {} (configuration, event log, logs) is kept",
        ServicePaths::from_env().root.display()
    );
    Ok(())
}

fn service_main(_arguments: Vec<OsString>) {
    let paths = SERVICE_PATHS
        .get()
        .cloned()
        .unwrap_or_else(ServicePaths::from_env);
    if let Ok(file) =
        tally_service::rotate::RotatingFile::open(&paths.log_file(), LOG_FILE_BYTES, LOG_FILES_KEPT)
    {
        tally_service::init_logging_to(file);
    }
    let handle = Arc::new(OnceLock::<service_control_handler::ServiceStatusHandle>::new());
    let controller = Controller::new({
        let handle = Arc::clone(&handle);
        move |status| {
            if let Some(handle) = handle.get()
                && let Err(error) = handle.set_service_status(scm_status(status))
            {
                tracing::warn!(%error, "cannot report the service status");
            }
        }
    });
    let on_control = {
        let controller = Arc::clone(&controller);
        move |control| match control {
            ServiceControl::Stop | ServiceControl::Shutdown => {
                controller.stop_requested();
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        }
    };
    match service_control_handler::register(SERVICE_NAME, on_control) {
        Ok(registered) => {
            let _ = handle.set(registered);
        }
        Err(error) => {
            tracing::error!(%error, "cannot register with the service control manager");
            return;
        }
    }
    controller.report_current();
    super::run_service(&paths, &controller);
}

fn scm_status(status: Status) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: match status.phase {
            Phase::StartPending => ServiceState::StartPending,
            Phase::Running => ServiceState::Running,
            Phase::StopPending => ServiceState::StopPending,
            Phase::Stopped => ServiceState::Stopped,
        },
        controls_accepted: if status.accepts_stop {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code: match status.exit_code {
            0 => ServiceExitCode::NO_ERROR,
            code => ServiceExitCode::ServiceSpecific(code.into()),
        },
        checkpoint: status.checkpoint,
        wait_hint: status.wait_hint,
        process_id: None,
    }
}
