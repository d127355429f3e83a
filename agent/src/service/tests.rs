use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::log::Log;

const TOKEN: &str = "service-test-token-0123456789";

#[test]
fn the_service_starts_runs_and_stops_once() {
    let mut state = ServiceState::default();
    assert_eq!(state.status().phase, Phase::StartPending);
    assert!(!state.status().accepts_stop);

    let running = state.on(ServiceEvent::Ready);
    assert_eq!(running.report.map(|s| s.phase), Some(Phase::Running));
    assert!(running.report.unwrap().accepts_stop);
    assert!(!running.stop_agent);
    // Nothing new: nothing to report.
    assert_eq!(state.on(ServiceEvent::Ready).report, None);

    let stopping = state.on(ServiceEvent::StopRequested);
    assert!(stopping.stop_agent);
    let status = stopping.report.unwrap();
    assert_eq!(
        (status.phase, status.accepts_stop, status.checkpoint),
        (Phase::StopPending, false, 1)
    );
    assert!(status.wait_hint >= Duration::from_secs(15), "{status:?}");
    // A second stop reports progress and does not stop the agent twice.
    let again = state.on(ServiceEvent::StopRequested);
    assert!(!again.stop_agent);
    assert_eq!(again.report.map(|s| s.checkpoint), Some(2));
    assert_eq!(state.on(ServiceEvent::Ready).report, None);

    let stopped = state.on(ServiceEvent::Exited(0)).report.unwrap();
    assert_eq!((stopped.phase, stopped.exit_code), (Phase::Stopped, 0));
    // Stopped is final.
    for event in [
        ServiceEvent::Ready,
        ServiceEvent::StopRequested,
        ServiceEvent::Exited(1),
    ] {
        assert_eq!(
            state.on(event),
            Transition {
                report: None,
                stop_agent: false
            }
        );
    }
}

#[test]
fn a_stop_while_starting_stops_and_a_failed_start_reports_its_exit_code() {
    let mut state = ServiceState::default();
    let transition = state.on(ServiceEvent::StopRequested);
    assert!(transition.stop_agent);
    assert_eq!(transition.report.unwrap().phase, Phase::StopPending);
    // The agent became ready just as the stop came: it stays stopping.
    assert_eq!(state.on(ServiceEvent::Ready).report, None);

    let mut state = ServiceState::default();
    let stopped = state.on(ServiceEvent::Exited(64)).report.unwrap();
    assert_eq!((stopped.phase, stopped.exit_code), (Phase::Stopped, 64));
}

#[test]
fn files_live_under_program_data() {
    let paths = ServicePaths::new(Some(r"D:\Data".into()));
    assert_eq!(paths.root, Path::new(r"D:\Data").join("Tally"));
    assert_eq!(paths.config(), paths.root.join("agent.toml"));
    assert_eq!(paths.data_dir(), paths.root.join("data"));
    assert_eq!(
        paths.log_file(),
        paths.root.join("logs").join("tally-agent.log")
    );
    assert_eq!(
        ServicePaths::at(Some(r"E:\Tally".into())).config(),
        Path::new(r"E:\Tally").join("agent.toml")
    );
    for unset in [None, Some("".into())] {
        assert_eq!(
            ServicePaths::new(unset).root,
            Path::new(r"C:\ProgramData").join("Tally")
        );
    }
}

#[test]
fn the_sample_configuration_is_written_once_with_this_machines_paths() {
    let dir = tempfile::tempdir().unwrap();
    let paths = ServicePaths::new(Some(dir.path().to_owned()));
    assert!(paths.install_sample_config().unwrap());
    let text = std::fs::read_to_string(paths.config()).unwrap();
    assert!(
        !text.contains("/var/lib") && !text.contains("/etc/tally"),
        "{text}"
    );
    let data_dir = format!("data_dir = '{}'", paths.data_dir().display());
    assert!(text.contains(&data_dir), "{text}");
    // As shipped it is refused: its tokens are placeholders.
    let error = paths.config_args().load().unwrap_err().to_string();
    assert!(error.contains("CHANGE-ME"), "{error}");

    // An edited configuration is never replaced.
    std::fs::write(paths.config(), "edited").unwrap();
    assert!(!paths.install_sample_config().unwrap());
    assert_eq!(std::fs::read_to_string(paths.config()).unwrap(), "edited");
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn post_event(addr: std::net::SocketAddr, id: &str) -> String {
    let body = format!(r#"{{"id":"{id}","type":"receipt","sku":"SKU-1","qty":"3"}}"#);
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// The service's run, minus the service control manager: the statuses the manager would see in
/// their order, and the stop control ending the agent through the token SIGTERM cancels (whose
/// promise, in-flight requests finishing, `tests/tests/agent_shutdown.rs` checks): exit 0, the
/// log let go of and holding what was acknowledged.
#[test]
fn the_service_runs_the_agent_and_stops_it_on_the_stop_control() {
    let dir = tempfile::tempdir().unwrap();
    let paths = ServicePaths::new(Some(dir.path().to_owned()));
    tally_service::create_private_dir(&paths.root).unwrap();
    std::fs::write(
        paths.config(),
        format!(
            "listen = \"127.0.0.1:0\"\nagent_id = \"wh1-agent\"\nwarehouse = \"WH\"\nscanner_tokens = [\"{TOKEN}\"]\n"
        ),
    )
    .unwrap();
    let (tx, statuses) = std::sync::mpsc::channel();
    let controller = Controller::new(move |status| {
        let _ = tx.send(status);
    });
    controller.report_current();
    let service = std::thread::spawn({
        let (paths, controller) = (paths.clone(), Arc::clone(&controller));
        move || run_service(&paths, &controller)
    });
    wait_until("the agent listens", || controller.listening().is_some());
    let addr = controller.listening().unwrap();
    let answer = post_event(addr, "svc-1");
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");

    controller.stop_requested();
    assert_eq!(service.join().unwrap(), 0);
    let phases: Vec<(Phase, u8)> = statuses
        .try_iter()
        .map(|s| (s.phase, s.exit_code))
        .collect();
    assert_eq!(
        phases,
        [
            (Phase::StartPending, 0),
            (Phase::Running, 0),
            (Phase::StopPending, 0),
            (Phase::Stopped, 0)
        ]
    );
    // The event is in the log under the service's data directory, which the agent let go of.
    let log = Log::open(&paths.data_dir()).unwrap();
    let events = log.read_after(0, 10).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.id.as_deref(), Some("svc-1"));
}

#[test]
fn a_service_without_a_valid_configuration_stops_with_64() {
    let dir = tempfile::tempdir().unwrap();
    let paths = ServicePaths::new(Some(dir.path().to_owned()));
    paths.install_sample_config().unwrap();
    let (tx, statuses) = std::sync::mpsc::channel();
    let controller = Controller::new(move |status| {
        let _ = tx.send(status);
    });
    assert_eq!(run_service(&paths, &controller), 64);
    let last = statuses.try_iter().last().unwrap();
    assert_eq!((last.phase, last.exit_code), (Phase::Stopped, 64));
}
