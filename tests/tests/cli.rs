//! osctl as a new user meets it: generated files, one-line errors with a non-zero
//! exit code, shell completions.

use std::os::unix::fs::PermissionsExt;

use e2e::Home;

#[test]
fn gen_config_writes_four_private_files_holding_valid_configurations() {
    let home = Home::new();
    let out = home.path().join("out");
    let out_arg = out.to_str().unwrap();
    home.osctl(&[
        "gen",
        "config",
        "demo",
        "10.5.0.2",
        "--output-dir",
        out_arg,
        "--config-patch",
        r#"{"machine":{"sysctls":{"vm.swappiness":"10"}}}"#,
    ])
    .success();
    for name in [
        "secrets.yaml",
        "controlplane.yaml",
        "worker.yaml",
        "osctlconfig",
    ] {
        let mode = std::fs::metadata(out.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
    }
    let control_plane = std::fs::read_to_string(out.join("controlplane.yaml")).unwrap();
    let worker = std::fs::read_to_string(out.join("worker.yaml")).unwrap();
    let control_plane = machine_config::ConfigBundle::parse(&control_plane).unwrap();
    let worker = machine_config::ConfigBundle::parse(&worker).unwrap();
    assert_eq!(
        control_plane.config.cluster.endpoint,
        "https://10.5.0.2:50000"
    );
    assert!(
        control_plane.secrets.ca.key.is_some(),
        "the control plane holds the CA key"
    );
    assert!(
        worker.secrets.ca.key.is_none(),
        "a worker must not hold the CA key"
    );
    assert_eq!(
        worker.config.machine.sysctls["vm.swappiness"], "10",
        "the patch applies to both"
    );

    // Existing files are not overwritten without --force.
    let again = home.osctl(&["gen", "config", "demo", "10.5.0.2", "--output-dir", out_arg]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("exists: pass --force"),
        "{}",
        again.stderr
    );

    // A bad patch is refused naming the field.
    let bad = home.osctl(&[
        "gen",
        "config",
        "demo",
        "10.5.0.2",
        "--output-dir",
        out_arg,
        "--force",
        "--config-patch",
        r#"{"machine":{"restart":"x"}}"#,
    ]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("machine.restart"), "{}", bad.stderr);
}

#[test]
fn errors_are_one_clear_line_with_a_non_zero_exit() {
    let home = Home::new();
    let out = home.path().join("gen");
    home.osctl(&[
        "gen",
        "config",
        "demo",
        "127.0.14.2",
        "--output-dir",
        out.to_str().unwrap(),
    ])
    .success();
    let config = out.join("osctlconfig");

    // No node listens there.
    let run = home.osctl(&["--config", config.to_str().unwrap(), "version"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.starts_with("osctl: "), "{}", run.stderr);
    assert!(
        run.stderr.contains("127.0.14.2:50000: connection refused"),
        "{}",
        run.stderr
    );

    // No client config at all.
    let run = home.osctl(&["version"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("no context selected"), "{}", run.stderr);

    // A usage error is exit code 2.
    assert_eq!(home.osctl(&["version", "--bogus"]).code, 2);
}

#[test]
fn completions_are_generated_for_the_common_shells() {
    let home = Home::new();
    for shell in ["bash", "zsh", "fish"] {
        let run = home.osctl(&["completion", shell]).success();
        assert!(
            run.stdout.contains("apply-config"),
            "{shell} completion lacks commands"
        );
    }
}
