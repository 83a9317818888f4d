//! Maintenance mode: a node without configuration serves only Version and
//! ApplyConfiguration over TLS without client certificates, refuses an invalid
//! configuration naming the field, and continues into normal mode with a valid one,
//! which then survives a reboot.

use std::time::Duration;

use api::machine::{ApplyConfigurationRequest, ApplyMode};
use api::transport::NodeAddress;
use e2e::{Home, runtime, spawn_agent, wait_for};

#[test]
fn a_node_without_configuration_waits_for_one_and_then_runs_it() {
    let home = Home::new();
    let state = tempfile::tempdir().unwrap();
    let mut agent = spawn_agent(state.path(), "127.0.15.2:50000".parse().unwrap(), None);
    let insecure = |args: &[&str]| {
        let mut full = vec!["--insecure", "-e", "127.0.15.2"];
        full.extend_from_slice(args);
        home.osctl(&full)
    };

    let version = wait_for("maintenance mode", Duration::from_secs(10), || {
        let run = insecure(&["-o", "json", "version"]);
        (run.code == 0).then(|| run.json())
    });
    assert_eq!(version[0]["type"], "maintenance");

    // Nothing but Version and ApplyConfiguration.
    let refused = insecure(&["services"]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("maintenance mode"),
        "{}",
        refused.stderr
    );

    // An invalid configuration, sent past osctl's own check, is refused naming the
    // field, and the node stays in maintenance mode.
    let generated = home.path().join("gen");
    home.osctl(&[
        "gen",
        "config",
        "demo",
        "127.0.15.2",
        "--output-dir",
        generated.to_str().unwrap(),
    ])
    .success();
    let valid = std::fs::read_to_string(generated.join("controlplane.yaml")).unwrap();
    let invalid = valid.replace("type: controlplane", "type: gpu");
    let status = runtime().block_on(async {
        let node = NodeAddress {
            host: "127.0.15.2".into(),
            port: 50000,
        };
        let channel = api::transport::connect(
            &node,
            pki::tls::insecure_client_config().unwrap(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let mut client = api::machine::machine_service_client::MachineServiceClient::new(channel);
        client
            .apply_configuration(ApplyConfigurationRequest {
                data: invalid.into_bytes(),
                mode: ApplyMode::Auto.into(),
                dry_run: false,
                try_timeout_seconds: 0,
            })
            .await
            .unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("machine.type"),
        "{}",
        status.message()
    );
    assert_eq!(
        insecure(&["-o", "json", "version"]).success().json()[0]["type"],
        "maintenance"
    );

    // A valid one: the node leaves maintenance mode and answers mutual TLS only.
    let config = generated.join("controlplane.yaml");
    insecure(&["apply-config", "-f", config.to_str().unwrap()]).success();
    let client_config = generated.join("osctlconfig");
    let secure = |args: &[&str]| {
        let mut full = vec!["--config", client_config.to_str().unwrap(), "-o", "json"];
        full.extend_from_slice(args);
        home.osctl(&full)
    };
    let configured = wait_for("normal mode", Duration::from_secs(10), || {
        let run = secure(&["version"]);
        (run.code == 0).then(|| run.json())
    });
    assert_eq!(configured[0]["type"], "controlplane");
    let boot_id = configured[0]["boot_id"].as_str().unwrap().to_owned();
    assert_eq!(
        boot_id,
        version[0]["boot_id"].as_str().unwrap(),
        "leaving maintenance is not a reboot"
    );
    assert_ne!(
        insecure(&["version"]).code,
        0,
        "the insecure endpoint must be gone"
    );

    // The configuration was stored: it survives a reboot.
    secure(&["reboot", "--wait"]).success();
    let rebooted = secure(&["version"]).success().json();
    assert_eq!(rebooted[0]["type"], "controlplane");
    assert_ne!(rebooted[0]["boot_id"], configured[0]["boot_id"]);

    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = agent.wait();
}
