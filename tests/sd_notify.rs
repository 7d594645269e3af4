//! sd_notify against a real unix datagram socket bound by the test, as systemd binds NOTIFY_SOCKET. One test
//! in this binary: it sets the process environment.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use kdump_hotplugd::edge::notify::SdNotifier;
use kdump_hotplugd::edge::{Notification, Notifier};

fn receive(socket: &UnixDatagram) -> String {
    let mut buffer = [0u8; 4096];
    let n = socket
        .recv(&mut buffer)
        .expect("no datagram within the deadline");
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}

#[test]
fn notifications_reach_the_service_manager_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // SAFETY of set_var: this binary's only test, before any other thread reads the environment.
    std::env::set_var("NOTIFY_SOCKET", &path);
    std::env::set_var("WATCHDOG_USEC", "4000000");
    std::env::set_var("WATCHDOG_PID", std::process::id().to_string());

    let notifier = SdNotifier::from_env();
    assert_eq!(notifier.watchdog_interval(), Some(Duration::from_secs(4)));

    notifier.notify(Notification::Ready {
        status: "idle: 2 ranges".into(),
    });
    assert_eq!(receive(&socket), "READY=1\nSTATUS=idle: 2 ranges\n");

    notifier.notify(Notification::Status("waiting".into()));
    assert_eq!(receive(&socket), "STATUS=waiting\n");

    notifier.notify(Notification::Reloading);
    let reloading = receive(&socket);
    let lines: Vec<&str> = reloading.lines().collect();
    assert_eq!(lines[0], "RELOADING=1");
    let usec: u64 = lines[1]
        .strip_prefix("MONOTONIC_USEC=")
        .expect("MONOTONIC_USEC with RELOADING")
        .parse()
        .unwrap();
    assert!(usec > 0);

    notifier.notify(Notification::Watchdog);
    assert_eq!(receive(&socket), "WATCHDOG=1\n");
    notifier.notify(Notification::Stopping);
    assert_eq!(receive(&socket), "STOPPING=1\n");

    // Another process's watchdog is not ours.
    std::env::set_var("WATCHDOG_PID", "1");
    assert_eq!(SdNotifier::from_env().watchdog_interval(), None);
}
