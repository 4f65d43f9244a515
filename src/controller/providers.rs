//! From a claim's `providerConfigRef` to a cloud provider: the ProviderConfig
//! and its credentials Secret come from the controller's watch caches, and one
//! provider is kept per ProviderConfig, rebuilt when the ProviderConfig or the
//! Secret changes, so a rotated Secret or an edited `rateLimits` takes effect
//! without a restart. Rate limiters live in the shared transport, keyed by the
//! ProviderConfig's name, so a rebuild keeps their state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::v1alpha1::ProviderConfig;
use crate::cloud::{self, Credentials, NicProvider, ProviderSettings, Transport};

/// Why a claim has no usable provider. Each is reported as a condition with
/// the stable `reason`; none of them ever blocks a `Retain` deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

fn problem(reason: &'static str, message: String) -> Problem {
    Problem { reason, message }
}

/// A provider built for one ProviderConfig.
#[derive(Clone)]
pub struct Resolved {
    pub config: Arc<ProviderConfig>,
    pub provider: Arc<dyn NicProvider>,
}

/// A provider and the fingerprint (resourceVersions) it was built from.
type Built = (String, Arc<dyn NicProvider>);

pub struct Providers {
    configs: Store<ProviderConfig>,
    secrets: Store<Secret>,
    namespaces: Store<Namespace>,
    secrets_namespace: String,
    transport: Transport,
    /// ProviderConfig name → the provider and what it was built from.
    built: Mutex<HashMap<String, Built>>,
}

impl Providers {
    pub fn new(
        configs: Store<ProviderConfig>,
        secrets: Store<Secret>,
        namespaces: Store<Namespace>,
        secrets_namespace: String,
        transport: Transport,
    ) -> Self {
        Providers {
            configs,
            secrets,
            namespaces,
            secrets_namespace,
            transport,
            built: Mutex::new(HashMap::new()),
        }
    }

    pub fn secrets_namespace(&self) -> &str {
        &self.secrets_namespace
    }

    pub fn config(&self, name: &str) -> Option<Arc<ProviderConfig>> {
        self.configs.get(&ObjectRef::new(name))
    }

    /// The provider a claim in `namespace` uses through ProviderConfig `name`.
    pub fn for_claim(&self, name: &str, namespace: &str) -> Result<Resolved, Problem> {
        let config = self.config(name).ok_or_else(|| {
            problem(
                "ProviderConfigNotFound",
                format!("ProviderConfig {name} does not exist"),
            )
        })?;
        if let Some(selector) = &config.spec.allowed_namespaces {
            let labels = self
                .namespaces
                .get(&ObjectRef::new(namespace))
                .map(|ns| ns.labels().clone())
                .unwrap_or_else(|| {
                    // kube-apiserver sets this label on every namespace.
                    BTreeMap::from([(
                        "kubernetes.io/metadata.name".to_string(),
                        namespace.to_string(),
                    )])
                });
            if !selector_matches(selector, &labels) {
                return Err(problem(
                    "NamespaceNotAllowed",
                    format!(
                        "ProviderConfig {name} does not allow claims from namespace {namespace} (allowedNamespaces)"
                    ),
                ));
            }
        }
        self.build(&config)
            .map(|provider| Resolved { config, provider })
    }

    /// Builds (or reuses) the provider of a ProviderConfig.
    pub fn build(&self, config: &ProviderConfig) -> Result<Arc<dyn NicProvider>, Problem> {
        let name = config.name_any();
        let reference = &config.spec.credentials_secret_ref;
        let secret_ns = reference
            .namespace
            .clone()
            .unwrap_or_else(|| self.secrets_namespace.clone());
        if secret_ns != self.secrets_namespace {
            return Err(problem(
                "SecretNamespaceNotAllowed",
                format!(
                    "ProviderConfig {name} names a Secret in namespace {secret_ns}; this installation reads credentials only from {}",
                    self.secrets_namespace
                ),
            ));
        }
        let secret = self
            .secrets
            .get(&ObjectRef::new(&reference.name).within(&secret_ns))
            .ok_or_else(|| {
                problem(
                    "SecretNotFound",
                    format!("Secret {secret_ns}/{} does not exist", reference.name),
                )
            })?;
        let fingerprint = format!(
            "{}/{}",
            // The generation, not the resourceVersion: the ProviderConfig's
            // own status writes must not rebuild its provider.
            config.metadata.generation.unwrap_or_default(),
            secret.resource_version().unwrap_or_default()
        );
        if let Ok(built) = self.built.lock()
            && let Some((f, provider)) = built.get(&name)
            && *f == fingerprint
        {
            return Ok(provider.clone());
        }
        let credentials = credentials(&secret, reference)?;
        let settings = ProviderSettings {
            provider: config.spec.provider,
            region: config.spec.region.clone().unwrap_or_default(),
            endpoint: config.spec.endpoint.clone(),
            cvm_endpoint: config.spec.cvm_endpoint.clone(),
            rate_limits: config
                .spec
                .rate_limits
                .iter()
                .map(|r| (r.action.clone(), f64::from(r.requests_per_second)))
                .collect(),
            scope: name.clone(),
        };
        let provider =
            cloud::connect(&settings, self.transport.clone(), credentials).map_err(|e| {
                problem(
                    "ProviderConfigInvalid",
                    format!("ProviderConfig {name}: {}: {}", e.code, e.message),
                )
            })?;
        if let Ok(mut built) = self.built.lock() {
            built.insert(name, (fingerprint, provider.clone()));
        }
        Ok(provider)
    }

    /// The names of ProviderConfigs whose credentials are in this Secret.
    pub fn configs_using_secret(&self, namespace: &str, name: &str) -> Vec<String> {
        self.configs
            .state()
            .iter()
            .filter(|c| {
                let r = &c.spec.credentials_secret_ref;
                r.name == name
                    && r.namespace.as_deref().unwrap_or(&self.secrets_namespace) == namespace
            })
            .map(|c| c.name_any())
            .collect()
    }

    pub fn all_configs(&self) -> Vec<Arc<ProviderConfig>> {
        self.configs.state()
    }
}

fn credentials(
    secret: &Secret,
    reference: &crate::api::v1alpha1::CredentialsSecretRef,
) -> Result<Credentials, Problem> {
    let data = secret.data.clone().unwrap_or_default();
    let get = |key: &str| -> Option<String> {
        data.get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .filter(|s| !s.trim().is_empty())
    };
    let missing = |key: &str| {
        problem(
            "SecretKeyMissing",
            format!(
                "Secret {} has no non-empty UTF-8 key {key}",
                secret.name_any()
            ),
        )
    };
    let token = match &reference.token_key {
        Some(key) => Some(get(key).ok_or_else(|| missing(key))?),
        None => None,
    };
    let id = get(&reference.access_key_id_key);
    let key = get(&reference.access_key_secret_key);
    let credentials = match (id, key, token) {
        (Some(id), Some(key), token) => {
            let c = Credentials::new(id, key);
            match token {
                Some(t) => c.with_token(t),
                None => c,
            }
        }
        // A Zenlayer personal access token stands alone.
        (None, None, Some(t)) => Credentials::new("", "").with_token(t),
        (None, _, _) => return Err(missing(&reference.access_key_id_key)),
        (_, None, _) => return Err(missing(&reference.access_key_secret_key)),
    };
    Ok(credentials)
}

/// Label-selector matching as kube-apiserver defines it.
pub fn selector_matches(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    if let Some(m) = &selector.match_labels
        && m.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    #[test]
    fn selectors_match_as_kube_apiserver_does() {
        let labels = BTreeMap::from([("team".to_string(), "net".to_string())]);
        let sel =
            |labels: Option<&[(&str, &str)]>, exprs: Vec<(&str, &str, &[&str])>| LabelSelector {
                match_labels: labels.map(|l| {
                    l.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                }),
                match_expressions: Some(
                    exprs
                        .into_iter()
                        .map(|(k, op, vs)| LabelSelectorRequirement {
                            key: k.into(),
                            operator: op.into(),
                            values: Some(vs.iter().map(|s| s.to_string()).collect()),
                        })
                        .collect(),
                ),
            };
        assert!(selector_matches(
            &sel(Some(&[("team", "net")]), vec![]),
            &labels
        ));
        assert!(!selector_matches(
            &sel(Some(&[("team", "web")]), vec![]),
            &labels
        ));
        assert!(selector_matches(
            &sel(None, vec![("team", "In", &["net", "x"])]),
            &labels
        ));
        assert!(!selector_matches(
            &sel(None, vec![("team", "NotIn", &["net"])]),
            &labels
        ));
        assert!(selector_matches(
            &sel(None, vec![("env", "DoesNotExist", &[])]),
            &labels
        ));
        assert!(!selector_matches(
            &sel(None, vec![("env", "Exists", &[])]),
            &labels
        ));
        assert!(!selector_matches(
            &sel(None, vec![("team", "Bogus", &[])]),
            &labels
        ));
    }
}
