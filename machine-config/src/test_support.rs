//! Fixtures shared by the unit tests: a valid, full control-plane config and the
//! helper that mutates it and asserts the resulting error.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::bundle::ConfigBundle;
use crate::patch::Patch;

/// A control-plane config that uses every section of the schema.
pub(crate) const FULL_CONFIG: &str = r#"version: v1alpha1
machine:
  type: controlplane
  hostname: cp-1
  certSANs: [api.example.com, 10.5.0.2]
  network:
    interfaces:
      - name: eth0
        addresses: [10.5.0.2/24, fd00::2/64]
        routes:
          - network: 0.0.0.0/0
            gateway: 10.5.0.1
          - network: ::/0
            gateway: fd00::1
            metric: 1024
        mtu: 1500
      - name: eth1
        dhcp: true
    nameservers: [1.1.1.1, 2606:4700:4700::1111]
  sysctls:
    net.ipv4.ip_forward: "1"
    kernel/panic: "10"
  files:
    - path: /etc/app/app.conf
      content: "listen = 8080\n"
      permissions: 0o600
    - path: /etc/motd
      content: "welcome\n"
      op: append
  services:
    - name: db
      command: [/usr/bin/db, --data, /var/lib/db]
      env:
        DB_MODE: primary
      restart: on-failure
      healthCheck:
        tcp: 127.0.0.1:5432
        interval: 5s
        timeout: 1s
    - name: app
      command: [/usr/bin/app]
      workingDir: /var/lib/app
      dependsOn: [db]
      healthCheck:
        exec: [/usr/bin/app, --check]
      stopTimeout: 30s
  install:
    disk: /dev/vda
    wipe: true
cluster:
  name: demo
  endpoint: https://10.5.0.2:50000
---
version: v1alpha1
kind: MachineSecrets
ca:
  crt: |
    -----BEGIN CERTIFICATE-----
    MIIBfake
    -----END CERTIFICATE-----
  key: |
    -----BEGIN PRIVATE KEY-----
    MIGHfake
    -----END PRIVATE KEY-----
token: 0123456789abcdef0123456789abcdef
"#;

/// [`FULL_CONFIG`], parsed.
pub(crate) fn full_bundle() -> ConfigBundle {
    ConfigBundle::parse(FULL_CONFIG).expect("FULL_CONFIG is valid")
}

/// Asserts that [`FULL_CONFIG`] changed by `mutation` fails to parse with an error that
/// contains `expected` (normally a field path and the start of the reason).
///
/// `mutation` is a patch (merge patch or RFC 6902, YAML or JSON) over the object
/// `{config: <first document>, secrets: <second document>}`, so it can reach both
/// documents; the result is rendered back to a two-document YAML stream and parsed.
pub(crate) fn rejects(mutation: &str, expected: &str) {
    let error = ConfigBundle::parse(&mutated(mutation))
        .expect_err(&format!("mutation {mutation} was accepted"))
        .to_string();
    assert!(
        error.contains(expected),
        "mutation {mutation}:\n  error    {error:?}\n  expected {expected:?}"
    );
}

/// Asserts that [`FULL_CONFIG`] changed by `mutation` (as for [`rejects`]) is valid.
pub(crate) fn accepts(mutation: &str) -> ConfigBundle {
    ConfigBundle::parse(&mutated(mutation))
        .unwrap_or_else(|error| panic!("mutation {mutation} was rejected: {error}"))
}

fn mutated(mutation: &str) -> String {
    let mut documents = serde_yaml_ng::Deserializer::from_str(FULL_CONFIG)
        .map(|document| Value::deserialize(document).expect("FULL_CONFIG is valid YAML"));
    let mut stream = json!({"config": documents.next(), "secrets": documents.next()});
    Patch::parse(mutation)
        .expect("test mutations are valid patches")
        .apply(&mut stream)
        .expect("test mutations apply to FULL_CONFIG");
    let render =
        |document: &Value| serde_yaml_ng::to_string(document).expect("JSON renders as YAML");
    format!(
        "{}---\n{}",
        render(&stream["config"]),
        render(&stream["secrets"])
    )
}
