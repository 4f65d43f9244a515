//! The transport's security limits, through the providers' public API: TLS
//! verification for non-loopback names, the response-size cap, the request
//! timeout; and the controller reading credentials only from its own
//! namespace.

mod controller_support;
mod rawhttp;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nicip::cloud::{
    CloudError, Credentials, ErrorClass, NicProvider, NicRef, Operation, Outcome, Provider,
    ProviderSettings, Transport, TransportConfig,
};
use rawhttp::{Answer, Behaviour, Endpoint, Framing};

const SECRET: &str = "security-secret-DO-NOT-LEAK";

fn provider_at(
    provider: Provider,
    endpoint: &str,
    config: TransportConfig,
) -> Arc<dyn NicProvider> {
    let settings =
        ProviderSettings::new(provider, "ap-guangzhou", "security").with_endpoint(endpoint);
    nicip::cloud::connect(
        &settings,
        Transport::new(config).expect("transport"),
        Credentials::new("AKIDsecurity00000000001", SECRET),
    )
    .expect("provider")
}

fn nic(provider: Provider) -> NicRef {
    match provider {
        Provider::TencentLegacy => NicRef::new("eni-1").in_vpc("vpc-1"),
        _ => NicRef::new("eni-1"),
    }
}

const PROVIDERS: [Provider; 3] = [
    Provider::Zenlayer,
    Provider::Tencent,
    Provider::TencentLegacy,
];

fn assert_clean(err: &CloudError) {
    assert!(!err.to_string().contains(SECRET), "{err}");
    assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
}

/// Each provider's documented host name, served locally (reqwest's resolve
/// override) with a certificate no trusted authority signed: the handshake
/// fails, the call is a classified network error that says why, and no
/// request (and so no signature) ever reaches the server.
#[tokio::test]
async fn an_untrusted_certificate_for_a_public_name_is_refused() {
    use tokio_rustls::rustls;
    let hosts = [
        (Provider::Zenlayer, "console.zenlayer.com", "/api/v2/zec"),
        (Provider::Tencent, "vpc.tencentcloudapi.com", "/"),
        (
            Provider::TencentLegacy,
            "vpc.api.qcloud.com",
            "/v2/index.php",
        ),
    ];
    let names: Vec<String> = hosts.iter().map(|(_, h, _)| h.to_string()).collect();
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(names).expect("certificate");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into()),
    )
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (refused, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, q) = (refused.clone(), requests.clone());
    let answer = Arc::new(Mutex::new(vec![Answer::json(
        200,
        r#"{"Response":{"TotalCount":0,"NetworkInterfaceSet":[],"RequestId":"r"}}"#,
    )]));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            match acceptor.accept(socket).await {
                Ok(tls) => rawhttp::serve(tls, answer.clone(), q.clone()).await,
                Err(_) => {
                    r.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    });
    for (provider, host, path) in hosts {
        let config = TransportConfig {
            resolve: vec![(host.to_string(), addr)],
            max_attempts: 1,
            ..TransportConfig::default()
        };
        let endpoint = format!("https://{host}:{}{path}", addr.port());
        let p = provider_at(provider, &endpoint, config);
        let err = p
            .describe_nics(&[nic(provider)])
            .await
            .expect_err("untrusted");
        assert_eq!(
            (err.code.as_str(), err.class),
            ("Client.Network", ErrorClass::Transient),
            "{err}"
        );
        assert!(
            err.message.contains("certificate"),
            "{provider}: the message says why: {err}"
        );
        assert_clean(&err);
    }
    // The server counts each refusal once the client's alert arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while refused.load(Ordering::SeqCst) < hosts.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "every handshake was attempted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        requests.load(Ordering::SeqCst),
        0,
        "no request crossed an untrusted connection"
    );
    // Plain http:// for the same public names is refused before any connection.
    for (provider, host, path) in hosts {
        let settings = ProviderSettings::new(provider, "ap-guangzhou", "security")
            .with_endpoint(format!("http://{host}:{}{path}", addr.port()));
        let err = nicip::cloud::connect(
            &settings,
            Transport::new(TransportConfig::default()).unwrap(),
            Credentials::new("k", SECRET),
        )
        .err()
        .expect("http:// to a public name");
        assert_eq!(err.code, "Client.InvalidEndpoint", "{err}");
    }
}

/// An answer larger than the cap, announced or not, is cut off with a
/// classified error, on reads and on writes (where it leaves the outcome
/// open), and costs no more than the cap.
#[tokio::test]
async fn response_bodies_are_capped() {
    let server = Endpoint::start(Answer::with(Behaviour::Endless)).await;
    let config = TransportConfig {
        max_response_bytes: 256 * 1024,
        max_attempts: 1,
        ..TransportConfig::default()
    };
    let big = format!(
        r#"{{"Response":{{"RequestId":"{}"}}}}"#,
        "x".repeat(300 * 1024)
    );
    for answer in [
        Answer::with(Behaviour::Endless),
        Answer::json(200, big.clone()),
        Answer {
            framing: Framing::Chunked(4096),
            ..Answer::json(200, big.clone())
        },
        Answer {
            framing: Framing::Close,
            ..Answer::json(200, big.clone())
        },
    ] {
        server.set(answer.clone());
        for provider in PROVIDERS {
            let p = provider_at(provider, &server.url(), config.clone());
            let err = p
                .describe_nics(&[nic(provider)])
                .await
                .expect_err("too large");
            assert_eq!(
                (err.code.as_str(), err.class, err.http_status),
                ("Client.ResponseTooLarge", ErrorClass::Transient, Some(200)),
                "{provider} {:?}/{:?}: {err}",
                answer.behaviour,
                answer.framing
            );
            let mut op = Operation::assign_ipv4(
                &nic(provider),
                nicip::cloud::Ipv4Request::Count(1),
                None,
                &nicip::controller::plan::empty_nic(&valid(provider)),
                &nicip::cloud::IdempotencyKey::derive("uid", 1, 0),
                1,
                0,
            );
            op.mark_sent();
            let err = p.submit(&op).await.expect_err("too large");
            assert_eq!(err.code, "Client.ResponseTooLarge", "{err}");
            assert_eq!(
                err.outcome,
                Outcome::Unknown,
                "the write may have acted: {err}"
            );
        }
    }
    // Just under the cap is read whole.
    let fits = r#"{"Response":{"TotalCount":0,"NetworkInterfaceSet":[],"RequestId":"r"}}"#;
    server.set(Answer::json(200, fits));
    let p = provider_at(Provider::Tencent, &server.url(), config);
    assert!(
        p.describe_nics(&[nic(Provider::Tencent)])
            .await
            .unwrap()
            .is_empty()
    );
}

fn valid(provider: Provider) -> nicip::controller::spec::ValidSpec {
    let spec: nicip::api::v1alpha1::NicIpClaimSpec = serde_json::from_value(serde_json::json!({
        "nicId": "eni-1", "vpcId": "vpc-1", "ipv4": {"count": 1}
    }))
    .unwrap();
    let p = provider_at(provider, "http://127.0.0.1:1/", TransportConfig::default());
    nicip::controller::spec::validate(&spec, provider, &p.capabilities()).expect("valid")
}

/// A server that never answers, and one that sends its body a byte a second,
/// are both ended by the request timeout (on tokio's paused clock): every
/// attempt is bounded, and the whole call ends within its in-flight window.
#[tokio::test(start_paused = true)]
async fn every_call_times_out() {
    let config = TransportConfig {
        timeout: Duration::from_secs(5),
        max_attempts: 3,
        base_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        ..TransportConfig::default()
    };
    for behaviour in [Behaviour::Silent, Behaviour::Drip(Duration::from_secs(1))] {
        let server = Endpoint::start(Answer::with(behaviour.clone())).await;
        for provider in PROVIDERS {
            let p = provider_at(provider, &server.url(), config.clone());
            let started = tokio::time::Instant::now();
            let before = server.requests();
            let err = p
                .describe_nics(&[nic(provider)])
                .await
                .expect_err("times out");
            let took = started.elapsed();
            assert_eq!(
                (err.code.as_str(), err.class, err.outcome),
                ("Client.Timeout", ErrorClass::Transient, Outcome::Unknown),
                "{provider} {behaviour:?}: {err}"
            );
            assert_eq!(
                server.requests() - before,
                3,
                "a read is retried: {provider}"
            );
            assert!(
                took >= Duration::from_secs(15),
                "{provider} {behaviour:?}: {took:?}"
            );
            assert!(
                took <= p.in_flight_window(),
                "{provider} {behaviour:?}: {took:?}"
            );
            assert_clean(&err);
        }
    }
}

/// A ProviderConfig naming a Secret outside the controller's namespace is
/// refused with a condition, on itself and on its claims, and the controller
/// never reads Secrets anywhere else: its Secret watch is namespaced.
#[tokio::test]
async fn secrets_are_read_only_from_the_controllers_namespace() {
    use controller_support::*;
    use k8s_openapi::api::core::v1::Secret;
    use nicip::api::v1alpha1::ProviderConfig;
    use serde_json::json;

    let mut env = Env::new().await;
    let foreign: kube::Api<Secret> = kube::Api::namespaced(env.client.clone(), "other");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "tencent-creds"},
        "stringData": {"accessKeyId": TC_ID, "accessKeySecret": TC_SECRET},
    }))
    .unwrap();
    foreign.create(&Default::default(), &secret).await.unwrap();
    env.provider_config(
        "foreign",
        "Tencent",
        "tencent-creds",
        json!({"credentialsSecretRef": {"name": "tencent-creds", "namespace": "other"}}),
    )
    .await;
    env.start();
    env.apply(
        "f",
        json!({"providerConfigRef": {"name": "foreign"}, "nicId": "eni-t1", "ipv4": {"count": 1}}),
    )
    .await;
    let claim = env
        .wait("f", "SecretNamespaceNotAllowed", |c| {
            is_stalled(c, "SecretNamespaceNotAllowed")
        })
        .await;
    let configs: kube::Api<ProviderConfig> = kube::Api::all(env.client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pc = configs.get("foreign").await.unwrap();
        let ready = pc
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        if let Some(c) = ready
            && c.status == "False"
            && c.reason == "SecretNamespaceNotAllowed"
        {
            assert!(c.message.contains("other"), "{}", c.message);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{:?}", pc.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        env.count(MUTATIONS),
        0,
        "no cloud call for the refused account"
    );
    let text = serde_json::to_string(&claim).unwrap();
    assert!(!text.contains(TC_SECRET), "no secret in the claim");
    let secret_reads: Vec<_> = env
        .kube
        .requests()
        .into_iter()
        .filter(|r| r.resource == "secrets" && matches!(r.verb.as_str(), "get" | "list" | "watch"))
        .collect();
    assert!(
        !secret_reads.is_empty(),
        "the controller watches its Secrets"
    );
    for r in &secret_reads {
        assert_eq!(
            r.namespace.as_deref(),
            Some(SECRETS_NS),
            "a Secret request outside the controller's namespace: {r:?}"
        );
    }
    env.stop().await.unwrap();
}
