//! Configuration changes through the API: invalid configurations are refused with the
//! field named and change nothing; each apply mode does what it promises.

use std::time::Duration;

use api::machine::machine_service_client::MachineServiceClient;
use api::machine::*;
use e2e::{Node, runtime};
use pki::Role;
use serde_yaml_ng::Value;
use tonic::transport::Channel;

const SLEEPER: &str =
    r#"{"machine":{"services":[{"name":"sleeper","command":["sleep","100000"]}]}}"#;

fn node(last_octet: u8) -> Node {
    Node::start_control_plane(
        format!("127.0.12.{last_octet}:50000").parse().unwrap(),
        &[SLEEPER],
    )
}

async fn running_config(client: &mut MachineServiceClient<Channel>) -> Configuration {
    client
        .get_configuration(GetConfigurationRequest {})
        .await
        .unwrap()
        .into_inner()
        .messages
        .remove(0)
}

async fn sleeper_pid(client: &mut MachineServiceClient<Channel>) -> u32 {
    let list = client
        .service_list(ServiceListRequest {})
        .await
        .unwrap()
        .into_inner()
        .messages
        .remove(0);
    list.services
        .iter()
        .find(|s| s.name == "sleeper")
        .map(|s| s.pid)
        .unwrap_or_default()
}

/// The two documents of a configuration file as YAML values.
fn documents(text: &str) -> (Value, Value) {
    let mut docs = text.split("\n---\n");
    let config = serde_yaml_ng::from_str(docs.next().unwrap()).unwrap();
    let secrets = serde_yaml_ng::from_str(docs.next().unwrap()).unwrap();
    (config, secrets)
}

fn render(config: &Value, secrets: &Value) -> Vec<u8> {
    format!(
        "{}---\n{}",
        serde_yaml_ng::to_string(config).unwrap(),
        serde_yaml_ng::to_string(secrets).unwrap()
    )
    .into_bytes()
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap()
}

type Mutation = fn(&mut Value, &mut Value);

/// Each invalid configuration, and a fragment its error must contain.
fn invalid_configurations() -> Vec<(&'static str, Mutation)> {
    vec![
        ("bogus", |c, _| c["bogus"] = yaml("1")),
        ("machine.hostnmae", |c, _| {
            c["machine"]["hostnmae"] = yaml("x")
        }),
        ("machine.certSANs", |c, _| {
            c["machine"]["certSANs"] = yaml("just-a-string")
        }),
        ("machine.network.interfaces[0].addresses[0]", |c, _| {
            c["machine"]["network"] = yaml("{interfaces: [{name: eth0, addresses: [10.0.0.1]}]}")
        }),
        ("machine.network.nameservers[0]", |c, _| {
            c["machine"]["network"] = yaml("{nameservers: [not-an-ip]}")
        }),
        ("machine.network.interfaces[0].mtu", |c, _| {
            c["machine"]["network"] = yaml("{interfaces: [{name: eth0, mtu: 10}]}")
        }),
        ("machine.network.interfaces[0].routes[0].gateway", |c, _| {
            c["machine"]["network"] = yaml(
                "{interfaces: [{name: eth0, routes: [{network: 0.0.0.0/0, gateway: 'fd00::1'}]}]}",
            )
        }),
        ("machine.services[1].name", |c, _| {
            c["machine"]["services"] =
                yaml("[{name: a, command: [sleep, '1']}, {name: a, command: [sleep, '1']}]")
        }),
        ("dependency cycle", |c, _| {
            c["machine"]["services"] = yaml(
                "[{name: a, command: [sleep, '1'], dependsOn: [b]}, {name: b, command: [sleep, '1'], dependsOn: [a]}]",
            )
        }),
        ("machine.services[0].dependsOn[0]", |c, _| {
            c["machine"]["services"] =
                yaml("[{name: a, command: [sleep, '1'], dependsOn: [nowhere]}]")
        }),
        ("machine.services[0].restart", |c, _| {
            c["machine"]["services"] =
                yaml("[{name: a, command: [sleep, '1'], restart: sometimes}]")
        }),
        ("machine.services[0].stopTimeout", |c, _| {
            c["machine"]["services"] = yaml("[{name: a, command: [sleep, '1'], stopTimeout: soon}]")
        }),
        ("machine.services[0].healthCheck", |c, _| {
            c["machine"]["services"] = yaml(
                "[{name: a, command: [sleep, '1'], healthCheck: {exec: ['true'], tcp: 'localhost:80'}}]",
            )
        }),
        ("machine.services[0].healthCheck.tcp", |c, _| {
            c["machine"]["services"] =
                yaml("[{name: a, command: [sleep, '1'], healthCheck: {tcp: 'localhost:99999'}}]")
        }),
        ("machine.services[0].command", |c, _| {
            c["machine"]["services"] = yaml("[{name: a, command: []}]")
        }),
        ("machine.services[0].name", |c, _| {
            c["machine"]["services"] = yaml("[{name: Web_1, command: ['true']}]")
        }),
        ("machine.services[0].env", |c, _| {
            c["machine"]["services"] = yaml("[{name: a, command: ['true'], env: {1BAD: x}}]")
        }),
        // A process service needs a command (only an image may go without one).
        ("machine.services[0].command: must not be empty", |c, _| {
            c["machine"]["services"] = yaml("[{name: a}]")
        }),
        ("machine.services[0].mounts", |c, _| {
            c["machine"]["services"] =
                yaml("[{name: a, command: ['true'], mounts: [{source: /a, destination: /b}]}]")
        }),
        ("machine.services[0].image", |c, _| {
            c["machine"]["services"] = yaml("[{name: a, image: 'Not A Reference'}]")
        }),
        ("machine.hostname", |c, _| {
            c["machine"]["hostname"] = yaml("Bad_Host")
        }),
        ("machine.type", |c, _| c["machine"]["type"] = yaml("gpu")),
        ("type", |c, _| {
            c["machine"].as_mapping_mut().unwrap().remove("type");
        }),
        ("endpoint", |c, _| {
            c["cluster"].as_mapping_mut().unwrap().remove("endpoint");
        }),
        ("cluster.endpoint", |c, _| {
            c["cluster"]["endpoint"] = yaml("ftp://somewhere")
        }),
        ("version", |c, _| c["version"] = yaml("v2")),
        ("machine.files[0].path", |c, _| {
            c["machine"]["files"] = yaml("[{path: etc/relative, content: x}]")
        }),
        ("machine.files[1].path", |c, _| {
            c["machine"]["files"] = yaml("[{path: /etc/a, content: x}, {path: /etc/a, content: y}]")
        }),
        ("machine.sysctls", |c, _| {
            c["machine"]["sysctls"] = yaml("{'Net IPv4': '1'}")
        }),
        ("secrets.token", |_, s| s["token"] = yaml("short")),
        ("secrets.ca.key", |_, s| {
            s["ca"].as_mapping_mut().unwrap().remove("key");
        }),
    ]
}

#[test]
fn invalid_configurations_are_refused_naming_the_field_and_change_nothing() {
    let node = node(2);
    runtime().block_on(async {
        let mut admin = node.client(Role::Admin).await.unwrap();
        let before = running_config(&mut admin).await;
        let pid_before = sleeper_pid(&mut admin).await;
        assert_ne!(pid_before, 0, "the sleeper service runs:\n{}", node.log());
        let text = String::from_utf8(before.data.clone()).unwrap();

        let cases = invalid_configurations();
        assert!(cases.len() >= 20);
        for (field, mutate) in cases {
            let (mut config, mut secrets) = documents(&text);
            mutate(&mut config, &mut secrets);
            let status = admin
                .apply_configuration(ApplyConfigurationRequest {
                    data: render(&config, &secrets),
                    mode: ApplyMode::Auto.into(),
                    dry_run: false,
                    try_timeout_seconds: 0,
                })
                .await
                .expect_err(&format!("a configuration with a bad {field} was accepted"));
            assert_eq!(
                status.code(),
                tonic::Code::InvalidArgument,
                "{field}: {status:?}"
            );
            assert!(
                status.message().contains(field),
                "the error for {field} does not name it: {}",
                status.message()
            );
        }

        let after = running_config(&mut admin).await;
        assert_eq!(
            after.config_hash, before.config_hash,
            "the running configuration changed"
        );
        assert_eq!(
            sleeper_pid(&mut admin).await,
            pid_before,
            "the service was disturbed"
        );
    });
}

#[test]
fn a_bad_patch_names_the_patch_and_the_field() {
    let node = node(3);
    runtime().block_on(async {
        let mut operator = node.client(Role::Operator).await.unwrap();
        let status = operator
            .patch_configuration(PatchConfigurationRequest {
                patches: vec![
                    r#"{"machine":{"sysctls":{"net.ipv4.ip_forward":"1"}}}"#.into(),
                    r#"[{"op":"replace","path":"/machine/hostname","value":"Not Valid"}]"#.into(),
                ],
                mode: ApplyMode::Auto.into(),
                dry_run: false,
                try_timeout_seconds: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("patch 2"), "{}", status.message());
        assert!(
            status.message().contains("machine.hostname"),
            "{}",
            status.message()
        );
    });
}

async fn patch(
    client: &mut MachineServiceClient<Channel>,
    patch: &str,
    mode: ApplyMode,
    dry_run: bool,
    try_seconds: u32,
) -> Result<ApplyConfiguration, tonic::Status> {
    client
        .patch_configuration(PatchConfigurationRequest {
            patches: vec![patch.into()],
            mode: mode.into(),
            dry_run,
            try_timeout_seconds: try_seconds,
        })
        .await
        .map(|reply| reply.into_inner().messages.remove(0))
}

async fn service_names(client: &mut MachineServiceClient<Channel>) -> Vec<String> {
    let list = client
        .service_list(ServiceListRequest {})
        .await
        .unwrap()
        .into_inner()
        .messages
        .remove(0);
    list.services.into_iter().map(|s| s.name).collect()
}

const EXTRA: &str = r#"{"machine":{"services":[{"name":"sleeper","command":["sleep","100000"]},{"name":"extra","command":["sleep","100000"]}]}}"#;

#[test]
fn each_apply_mode_does_what_it_promises() {
    let node = node(4);
    runtime().block_on(async {
        let mut operator = node.client(Role::Operator).await.unwrap();
        let hash = running_config(&mut operator).await.config_hash;

        // A dry run shows the diff and changes nothing.
        let dry = patch(&mut operator, EXTRA, ApplyMode::Auto, true, 0)
            .await
            .unwrap();
        assert!(dry.diff.contains("+  - name: extra"), "{}", dry.diff);
        assert_eq!(running_config(&mut operator).await.config_hash, hash);

        // no-reboot refuses a change that needs a reboot, naming it.
        let refused = patch(
            &mut operator,
            r#"{"machine":{"hostname":"renamed"}}"#,
            ApplyMode::NoReboot,
            false,
            0,
        )
        .await
        .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(
            refused.message().contains("machine.hostname"),
            "{}",
            refused.message()
        );
        assert_eq!(running_config(&mut operator).await.config_hash, hash);

        // try applies live, then reverts by itself.
        let tried = patch(&mut operator, EXTRA, ApplyMode::Try, false, 2)
            .await
            .unwrap();
        assert_eq!(tried.mode, i32::from(ApplyMode::Try));
        assert!(
            service_names(&mut operator)
                .await
                .contains(&"extra".to_owned())
        );
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(
            service_names(&mut operator).await,
            vec!["sleeper"],
            "the tried service was not reverted"
        );
        assert_eq!(running_config(&mut operator).await.config_hash, hash);

        // staged changes nothing until the next boot.
        let staged = patch(&mut operator, EXTRA, ApplyMode::Staged, false, 0)
            .await
            .unwrap();
        assert!(
            staged.mode_details.contains("next reboot"),
            "{}",
            staged.mode_details
        );
        assert_eq!(service_names(&mut operator).await, vec!["sleeper"]);
        assert_eq!(running_config(&mut operator).await.config_hash, hash);

        // auto applies live when it can.
        let live = patch(
            &mut operator,
            r#"{"machine":{"sysctls":{"vm.swappiness":"10"}}}"#,
            ApplyMode::Auto,
            false,
            0,
        )
        .await
        .unwrap();
        assert_eq!(live.mode, i32::from(ApplyMode::NoReboot));
        assert_ne!(running_config(&mut operator).await.config_hash, hash);
    });
}
