//! The security model, asserted from the errors a client sees: TLS 1.3 only, a client
//! certificate from the cluster CA is mandatory and must be valid, and each role gets
//! exactly what the access table grants.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use api::machine::{
    ContainersRequest, GenerateClientConfigurationRequest, GetConfigurationRequest,
    ImageImportRequest, ImageRemoveRequest, RebootRequest, RestartRequest, VersionRequest,
};
use e2e::{Node, runtime};
use pki::Role;

fn node(last_octet: u8) -> Node {
    Node::start_control_plane(format!("127.0.11.{last_octet}:50000").parse().unwrap(), &[])
}

/// The error of a Version call made with `tls`, as osctl would print it.
async fn version_error(node: &Node, tls: Arc<rustls::ClientConfig>) -> String {
    let mut client = match node.client_with(tls).await {
        Ok(client) => client,
        Err(e) => return e,
    };
    match client.version(VersionRequest {}).await {
        Ok(_) => panic!("the call was accepted"),
        Err(status) => api::transport::explain_status(&status),
    }
}

#[test]
fn connections_without_a_valid_client_certificate_are_refused() {
    let node = node(2);
    let rt = runtime();
    rt.block_on(async {
        // No client certificate at all.
        let error = version_error(&node, node.tls(None)).await;
        assert!(
            error.contains("a client certificate is required"),
            "{error}"
        );

        // A certificate from another CA.
        let other = pki::CertificateAuthority::generate("intruder").unwrap();
        let foreign = other
            .issue_client("mallory", Role::Admin, Duration::from_secs(3600))
            .unwrap();
        let tls = pki::tls::client_config(
            node.authority.cert_pem(),
            Some((&foreign.cert_pem, &foreign.key_pem)),
        )
        .unwrap();
        let error = version_error(&node, tls).await;
        assert!(error.contains("not signed by the cluster CA"), "{error}");

        // An expired certificate of the right CA.
        let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 86400);
        let expired = node
            .authority
            .issue_client_valid_from(
                "late",
                Role::Admin,
                two_days_ago,
                Duration::from_secs(86400),
            )
            .unwrap();
        let tls = pki::tls::client_config(
            node.authority.cert_pem(),
            Some((&expired.cert_pem, &expired.key_pem)),
        )
        .unwrap();
        let error = version_error(&node, tls).await;
        assert!(error.contains("expired"), "{error}");

        // A client that only speaks TLS 1.2, with a valid admin certificate.
        let admin = node.credentials(Role::Admin);
        let tls12 = tls12_only_client(&node, &admin);
        let error = version_error(&node, tls12).await;
        assert!(error.contains("TLS 1.3 only"), "{error}");
    });
}

fn tls12_only_client(node: &Node, credentials: &pki::CertifiedKey) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in pki::tls::certificates(node.authority.cert_pem(), "CA").unwrap() {
        roots.add(cert).unwrap();
    }
    let chain = pki::tls::certificates(&credentials.cert_pem, "client").unwrap();
    let key =
        rustls::pki_types::pem::PemObject::from_pem_slice(credentials.key_pem.as_bytes()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(pki::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

#[test]
fn each_role_gets_what_the_access_table_grants() {
    let node = node(3);
    let rt = runtime();
    rt.block_on(async {
        let mut reader = node.client(Role::Reader).await.unwrap();
        let mut operator = node.client(Role::Operator).await.unwrap();
        let mut admin = node.client(Role::Admin).await.unwrap();

        // A reader may read but not reboot; the refusal names the role needed.
        reader.version(VersionRequest {}).await.unwrap();
        let denied = reader.reboot(RebootRequest {}).await.unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(
            api::transport::explain_status(&denied)
                .contains("Reboot needs role os:operator or higher"),
            "{denied:?}"
        );

        // Containers: a reader may list (this node runs no containerd, and says so),
        // but restarting and changing images need os:operator.
        let listed = reader
            .containers(ContainersRequest::default())
            .await
            .unwrap_err();
        assert_eq!(listed.code(), tonic::Code::FailedPrecondition, "{listed:?}");
        assert!(
            listed.message().contains("runs no containerd"),
            "{listed:?}"
        );
        let restart = reader
            .restart(RestartRequest {
                namespace: "k8s.io".into(),
                id: "x".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(restart.code(), tonic::Code::PermissionDenied, "{restart:?}");
        let remove = reader
            .image_remove(ImageRemoveRequest::default())
            .await
            .unwrap_err();
        assert_eq!(remove.code(), tonic::Code::PermissionDenied, "{remove:?}");
        let upload = reader
            .image_import(futures::stream::iter([ImageImportRequest::default()]))
            .await
            .unwrap_err();
        assert_eq!(upload.code(), tonic::Code::PermissionDenied, "{upload:?}");

        // An operator reads the configuration with secrets redacted.
        let config = operator
            .get_configuration(GetConfigurationRequest {})
            .await
            .unwrap()
            .into_inner()
            .messages
            .remove(0);
        let text = String::from_utf8(config.data).unwrap();
        assert!(config.redacted);
        assert!(
            !text.contains("PRIVATE KEY"),
            "a CA key reached an operator:\n{text}"
        );
        assert!(
            !text.contains(&node.config.secrets.token),
            "the join token reached an operator"
        );

        // An operator may not mint client certificates.
        let mint = GenerateClientConfigurationRequest {
            role: "os:admin".into(),
            ttl_seconds: 60,
            name: String::new(),
        };
        let denied = operator
            .generate_client_configuration(mint.clone())
            .await
            .unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");

        // An admin sees the secrets and may mint certificates, which then work.
        let config = admin
            .get_configuration(GetConfigurationRequest {})
            .await
            .unwrap()
            .into_inner()
            .messages
            .remove(0);
        assert!(!config.redacted);
        assert!(
            String::from_utf8(config.data)
                .unwrap()
                .contains("PRIVATE KEY")
        );
        let minted = admin
            .generate_client_configuration(GenerateClientConfigurationRequest {
                role: "os:reader".into(),
                ..mint
            })
            .await
            .unwrap()
            .into_inner()
            .messages
            .remove(0);
        let identity = pki::PeerIdentity::from_der(
            &pki::tls::certificates(std::str::from_utf8(&minted.crt).unwrap(), "minted").unwrap()
                [0],
        )
        .unwrap();
        assert_eq!(identity.roles, vec![Role::Reader]);
        let tls = pki::tls::client_config(
            std::str::from_utf8(&minted.ca).unwrap(),
            Some((
                std::str::from_utf8(&minted.crt).unwrap(),
                std::str::from_utf8(&minted.key).unwrap(),
            )),
        )
        .unwrap();
        let mut minted_client = node.client_with(tls).await.unwrap();
        minted_client.version(VersionRequest {}).await.unwrap();
        assert!(
            minted_client.reboot(RebootRequest {}).await.is_err(),
            "a minted reader must not reboot"
        );
    });
}

#[test]
fn a_client_cannot_claim_a_forwarded_role() {
    let node = node(4);
    runtime().block_on(async {
        let mut reader = node.client(Role::Reader).await.unwrap();
        let mut request = tonic::Request::new(RebootRequest {});
        request
            .metadata_mut()
            .insert(api::FORWARDED_ROLE_METADATA, "os:admin".parse().unwrap());
        let denied = reader.reboot(request).await.unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(
            denied
                .message()
                .contains("only a control-plane node may forward"),
            "{denied:?}"
        );
    });
}
