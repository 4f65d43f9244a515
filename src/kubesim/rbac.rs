//! The optional authentication and RBAC authorization of the in-memory API
//! server, evaluated as kube-apiserver's RBAC authorizer evaluates them
//! (<https://kubernetes.io/docs/reference/access-authn-authz/rbac/>).
//!
//! Requests are authenticated by bearer token: each [`Identity`] a client is
//! made for gets a token of its own; an unknown token is a 401, no token is
//! `system:anonymous`. The request's attributes are read from its path and
//! query as kube-apiserver's `RequestInfoFactory` reads them (so a request
//! for a resource nobody serves is still authorized first), then the
//! ClusterRoleBindings and the RoleBindings of the request's namespace
//! stored in the server are walked for a rule that allows it. Every decision
//! is recorded with the rule that granted it.

use super::store::State;
use axum::http::Method;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Who a client is: the user name and groups kube-apiserver's authenticators
/// would give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    /// A cluster administrator (group `system:masters`, bound to `cluster-admin`).
    pub fn admin() -> Identity {
        Identity::user("kubesim-admin", &["system:masters"])
    }

    /// A ServiceAccount's token, as the ServiceAccount authenticator reads it.
    pub fn service_account(namespace: &str, name: &str) -> Identity {
        Identity {
            user: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }

    /// A user with these groups (and `system:authenticated`, which every
    /// authenticated user has).
    pub fn user(name: &str, groups: &[&str]) -> Identity {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        groups.push("system:authenticated".into());
        Identity {
            user: name.into(),
            groups,
        }
    }

    fn anonymous() -> Identity {
        Identity {
            user: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        }
    }
}

/// One authorization decision, as the RBAC authorizer saw the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub user: String,
    pub verb: String,
    /// API group (`""` for core); empty for a non-resource request.
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The path of a non-resource request (`/version`, `/apis`, ...).
    pub path: Option<String>,
    pub allowed: bool,
    /// The rule that allowed it.
    pub granted_by: Option<Grant>,
}

/// A rule that allowed a request, and the binding that gave it to the user.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// `ClusterRoleBinding` or `RoleBinding`.
    pub binding_kind: String,
    /// The RoleBinding's namespace.
    pub binding_namespace: Option<String>,
    pub binding_name: String,
    /// `ClusterRole` or `Role`.
    pub role_kind: String,
    pub role_name: String,
    /// The rule's index in the role's `rules`.
    pub rule_index: usize,
    pub rule: PolicyRule,
}

/// What a request asks for, read from its path as kube-apiserver reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attributes {
    Resource {
        verb: String,
        group: String,
        resource: String,
        subresource: String,
        namespace: String,
        name: String,
    },
    NonResource {
        verb: String,
        path: String,
    },
}

impl Attributes {
    /// kube-apiserver's `RequestInfoFactory.NewRequestInfo`, for the verbs
    /// kubesim serves (no `proxy`, no deprecated `/watch/` paths).
    pub(crate) fn of(method: &Method, path: &str, query: &HashMap<String, String>) -> Attributes {
        let non_resource = || Attributes::NonResource {
            verb: method.as_str().to_ascii_lowercase(),
            path: path.to_string(),
        };
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, rest) = match parts.as_slice() {
            ["api", _version, rest @ ..] if !rest.is_empty() => ("", rest),
            ["apis", group, _version, rest @ ..] if !rest.is_empty() => (*group, rest),
            _ => return non_resource(),
        };
        let mut verb = match *method {
            Method::POST => "create",
            Method::GET | Method::HEAD => "get",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "",
        }
        .to_string();
        let (namespace, rest) = match rest {
            // `/namespaces/x` is the namespace x, in its own namespace.
            ["namespaces", ns] => (*ns, rest),
            // `/namespaces/x/status` and `/finalize` are its subresources.
            ["namespaces", ns, "status" | "finalize", ..] => (*ns, rest),
            ["namespaces", ns, tail @ ..] => (*ns, tail),
            _ => ("", rest),
        };
        let resource = rest.first().copied().unwrap_or_default().to_string();
        let mut name = rest.get(1).copied().unwrap_or_default().to_string();
        let subresource = rest.get(2).copied().unwrap_or_default().to_string();
        if name.is_empty() && verb == "get" {
            // A value that does not parse still counts, unless it says no.
            let watch = query.get("watch").is_some_and(|w| {
                super::http::go_bool(w)
                    .unwrap_or(!matches!(w.to_ascii_lowercase().as_str(), "false" | "0"))
            });
            verb = if watch { "watch" } else { "list" }.into();
            // A list or watch of one name is authorized as that name.
            if let Some(selected) = query
                .get("fieldSelector")
                .and_then(|s| exact_name(s))
                .filter(|n| !n.contains('/') && !n.contains('%') && *n != "." && *n != "..")
            {
                name = selected.to_string();
            }
        }
        if name.is_empty() && verb == "delete" {
            verb = "deletecollection".into();
        }
        Attributes::Resource {
            verb,
            group: group.into(),
            resource,
            subresource,
            namespace: namespace.into(),
            name,
        }
    }
}

/// The name a field selector requires exactly (`metadata.name=x`, `==`).
fn exact_name(selector: &str) -> Option<&str> {
    let mut found = None;
    for term in selector.split(',') {
        let (key, value) = term
            .split_once("==")
            .or_else(|| term.split_once('='))
            .filter(|(k, _)| !k.ends_with('!'))?;
        if key.trim() == "metadata.name" {
            found = Some(value.trim());
        }
    }
    found
}

/// The authenticator's tokens and the decisions made so far.
pub(crate) struct Rbac {
    tokens: std::sync::Mutex<HashMap<String, Identity>>,
    decisions: std::sync::Mutex<Vec<Decision>>,
}

/// Why a request was refused before any handler ran.
pub(crate) enum Refusal {
    /// 401: a token nobody issued.
    Unauthorized,
    /// 403, with kube-apiserver's message.
    Forbidden { message: String, details: Value },
}

impl Rbac {
    pub(crate) fn new() -> Rbac {
        Rbac {
            tokens: Default::default(),
            decisions: Default::default(),
        }
    }

    /// The bearer token of `identity` (the same one every time).
    pub(crate) fn token_for(&self, identity: &Identity) -> String {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((t, _)) = tokens.iter().find(|(_, i)| *i == identity) {
            return t.clone();
        }
        let token = format!("kubesim-{}", uuid::Uuid::new_v4().simple());
        tokens.insert(token.clone(), identity.clone());
        token
    }

    pub(crate) fn decisions(&self) -> Vec<Decision> {
        self.decisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Authenticate the `Authorization` header and authorize the request.
    pub(crate) fn check(
        &self,
        st: &State,
        authorization: &str,
        attrs: &Attributes,
    ) -> Result<(), Refusal> {
        let identity = match authorization.strip_prefix("Bearer ") {
            Some(token) => self
                .tokens
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(token.trim())
                .cloned()
                .ok_or(Refusal::Unauthorized)?,
            None if authorization.is_empty() => Identity::anonymous(),
            None => return Err(Refusal::Unauthorized),
        };
        let (granted_by, errors) = authorize(st, &identity, attrs);
        let decision = decision(&identity, attrs, granted_by);
        let allowed = decision.allowed;
        self.decisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(decision);
        if allowed {
            return Ok(());
        }
        let mut reason = String::new();
        if !errors.is_empty() {
            reason = format!(": RBAC: {}", aggregate(&errors));
        }
        Err(forbidden(&identity.user, attrs, &reason))
    }
}

fn decision(identity: &Identity, attrs: &Attributes, granted_by: Option<Grant>) -> Decision {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let allowed = granted_by.is_some();
    match attrs {
        Attributes::Resource {
            verb,
            group,
            resource,
            subresource,
            namespace,
            name,
        } => Decision {
            user: identity.user.clone(),
            verb: verb.clone(),
            group: group.clone(),
            resource: resource.clone(),
            subresource: some(subresource),
            namespace: some(namespace),
            name: some(name),
            path: None,
            allowed,
            granted_by,
        },
        Attributes::NonResource { verb, path } => Decision {
            user: identity.user.clone(),
            verb: verb.clone(),
            group: String::new(),
            resource: String::new(),
            subresource: None,
            namespace: None,
            name: None,
            path: Some(path.clone()),
            allowed,
            granted_by,
        },
    }
}

/// As Go's `utilerrors.NewAggregate` prints several errors.
fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        _ => format!("[{}]", errors.join(", ")),
    }
}

/// kube-apiserver's `responsewriters.Forbidden` and `apierrors.NewForbidden`.
fn forbidden(user: &str, attrs: &Attributes, reason: &str) -> Refusal {
    match attrs {
        Attributes::NonResource { verb, path } => Refusal::Forbidden {
            message: format!("forbidden: User {user:?} cannot {verb} path {path:?}{reason}"),
            details: json!({}),
        },
        Attributes::Resource {
            verb,
            group,
            resource,
            subresource,
            namespace,
            name,
        } => {
            let combined = if subresource.is_empty() {
                resource.clone()
            } else {
                format!("{resource}/{subresource}")
            };
            let scope = if namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace {namespace:?}")
            };
            let what = format!(
                "User {user:?} cannot {verb} resource {combined:?} in API group {group:?} {scope}{reason}"
            );
            let qualified = if group.is_empty() {
                resource.clone()
            } else {
                format!("{resource}.{group}")
            };
            let message = if name.is_empty() {
                format!("{qualified} is forbidden: {what}")
            } else {
                format!("{qualified} {name:?} is forbidden: {what}")
            };
            // Go's omitempty drops the empty fields.
            let mut details = serde_json::Map::new();
            for (k, v) in [("name", name), ("group", group), ("kind", resource)] {
                if !v.is_empty() {
                    details.insert(k.into(), json!(v));
                }
            }
            Refusal::Forbidden {
                message,
                details: Value::Object(details),
            }
        }
    }
}

const RBAC: &str = "rbac.authorization.k8s.io";

fn stored<T: serde::de::DeserializeOwned>(st: &State, plural: &str, ns: Option<&str>) -> Vec<T> {
    st.list(&format!("{RBAC}/{plural}"), ns)
        .filter_map(|(_, o)| serde_json::from_str(o.json()).ok())
        .collect()
}

/// The RBAC authorizer's `VisitRulesFor`: ClusterRoleBindings first, then
/// the RoleBindings of the request's namespace; the first rule that allows
/// the request wins. Also the errors met resolving bindings (a role that does
/// not exist), which kube-apiserver appends to a refusal.
fn authorize(st: &State, who: &Identity, attrs: &Attributes) -> (Option<Grant>, Vec<String>) {
    let mut errors = Vec::new();
    for b in stored::<ClusterRoleBinding>(st, "clusterrolebindings", None) {
        if !b.subjects.iter().flatten().any(|s| applies(s, who, "")) {
            continue;
        }
        let Some(rules) = cluster_role_rules(st, &b.role_ref.name, &mut errors) else {
            continue;
        };
        if let Some(i) = rules.iter().position(|r| allows(r, attrs)) {
            return (
                Some(Grant {
                    binding_kind: "ClusterRoleBinding".into(),
                    binding_namespace: None,
                    binding_name: b.metadata.name.clone().unwrap_or_default(),
                    role_kind: "ClusterRole".into(),
                    role_name: b.role_ref.name.clone(),
                    rule_index: i,
                    rule: rules[i].clone(),
                }),
                errors,
            );
        }
    }
    let namespace = match attrs {
        Attributes::Resource { namespace, .. } if !namespace.is_empty() => namespace,
        _ => return (None, errors),
    };
    for b in stored::<RoleBinding>(st, "rolebindings", Some(namespace)) {
        if !b
            .subjects
            .iter()
            .flatten()
            .any(|s| applies(s, who, namespace))
        {
            continue;
        }
        let rules = match b.role_ref.kind.as_str() {
            "Role" => {
                let role = stored::<Role>(st, "roles", Some(namespace))
                    .into_iter()
                    .find(|r| r.metadata.name.as_deref() == Some(&b.role_ref.name));
                match role {
                    Some(r) => r.rules.unwrap_or_default(),
                    None => {
                        errors.push(format!("role.{RBAC} {:?} not found", b.role_ref.name));
                        continue;
                    }
                }
            }
            "ClusterRole" => match cluster_role_rules(st, &b.role_ref.name, &mut errors) {
                Some(r) => r,
                None => continue,
            },
            _ => continue,
        };
        if let Some(i) = rules.iter().position(|r| allows(r, attrs)) {
            return (
                Some(Grant {
                    binding_kind: "RoleBinding".into(),
                    binding_namespace: Some(namespace.clone()),
                    binding_name: b.metadata.name.clone().unwrap_or_default(),
                    role_kind: b.role_ref.kind.clone(),
                    role_name: b.role_ref.name.clone(),
                    rule_index: i,
                    rule: rules[i].clone(),
                }),
                errors,
            );
        }
    }
    (None, errors)
}

fn cluster_role_rules(st: &State, name: &str, errors: &mut Vec<String>) -> Option<Vec<PolicyRule>> {
    let role = stored::<ClusterRole>(st, "clusterroles", None)
        .into_iter()
        .find(|r| r.metadata.name.as_deref() == Some(name));
    match role {
        Some(r) => Some(r.rules.unwrap_or_default()),
        None => {
            errors.push(format!("clusterrole.{RBAC} {name:?} not found"));
            None
        }
    }
}

/// `appliesToUser`: a ServiceAccount subject without a namespace means the
/// binding's own namespace.
fn applies(s: &Subject, who: &Identity, binding_ns: &str) -> bool {
    match s.kind.as_str() {
        "User" => s.name == who.user,
        "Group" => who.groups.contains(&s.name),
        "ServiceAccount" => {
            let ns = s
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            !ns.is_empty() && who.user == format!("system:serviceaccount:{ns}:{}", s.name)
        }
        _ => false,
    }
}

/// `RuleAllows`, with its `VerbMatches`, `APIGroupMatches`,
/// `ResourceMatches`, `ResourceNameMatches` and `NonResourceURLMatches`.
fn allows(rule: &PolicyRule, attrs: &Attributes) -> bool {
    let any = |list: &Option<Vec<String>>, want: &str| {
        list.iter().flatten().any(|v| v == "*" || v == want)
    };
    let verb_ok = |verb: &str| rule.verbs.iter().any(|v| v == "*" || v == verb);
    match attrs {
        Attributes::Resource {
            verb,
            group,
            resource,
            subresource,
            name,
            ..
        } => {
            let combined = if subresource.is_empty() {
                resource.clone()
            } else {
                format!("{resource}/{subresource}")
            };
            let resource_ok = rule.resources.iter().flatten().any(|r| {
                r == "*"
                    || *r == combined
                    || (!subresource.is_empty()
                        && r.strip_prefix("*/") == Some(subresource.as_str()))
            });
            let names = rule.resource_names.as_deref().unwrap_or_default();
            let name_ok = names.is_empty() || names.iter().any(|n| n == name);
            verb_ok(verb) && any(&rule.api_groups, group) && resource_ok && name_ok
        }
        Attributes::NonResource { verb, path } => {
            verb_ok(verb)
                && rule.non_resource_urls.iter().flatten().any(|u| {
                    u == "*"
                        || u == path
                        || u.strip_suffix('*')
                            .is_some_and(|prefix| path.starts_with(prefix))
                })
        }
    }
}

/// The bootstrap policy kube-apiserver creates that kubesim's users need:
/// `cluster-admin` for `system:masters`, and discovery and version for
/// everyone authenticated (`system:discovery`, `system:public-info-viewer`,
/// which also admits the unauthenticated).
pub(crate) fn bootstrap_policy() -> Vec<(&'static str, Value)> {
    let role = |name: &str, rules: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "rules": rules})
    };
    let binding = |name: &str, groups: &[&str]| {
        let subjects: Vec<Value> = groups
            .iter()
            .map(|g| json!({"apiGroup": RBAC, "kind": "Group", "name": g}))
            .collect();
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
            "subjects": subjects})
    };
    vec![
        (
            "clusterroles",
            role(
                "cluster-admin",
                json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                    {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
            ),
        ),
        (
            "clusterroles",
            role(
                "system:discovery",
                json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz",
                    "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"],
                    "verbs": ["get"]}]),
            ),
        ),
        (
            "clusterroles",
            role(
                "system:public-info-viewer",
                json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                    "verbs": ["get"]}]),
            ),
        ),
        (
            "clusterrolebindings",
            binding("cluster-admin", &["system:masters"]),
        ),
        (
            "clusterrolebindings",
            binding("system:discovery", &["system:authenticated"]),
        ),
        (
            "clusterrolebindings",
            binding(
                "system:public-info-viewer",
                &["system:authenticated", "system:unauthenticated"],
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(method: Method, path: &str, query: &[(&str, &str)]) -> Attributes {
        let q = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Attributes::of(&method, path, &q)
    }

    fn res(verb: &str, group: &str, resource: &str, sub: &str, ns: &str, name: &str) -> Attributes {
        Attributes::Resource {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn request_attributes_are_read_as_kube_apiserver_reads_them() {
        let cases = [
            (
                attrs(Method::GET, "/apis/nicip.io/v1alpha1/nicipclaims", &[]),
                res("list", "nicip.io", "nicipclaims", "", "", ""),
            ),
            (
                attrs(
                    Method::GET,
                    "/apis/nicip.io/v1alpha1/namespaces/a/nicipclaims",
                    &[("watch", "true")],
                ),
                res("watch", "nicip.io", "nicipclaims", "", "a", ""),
            ),
            (
                attrs(
                    Method::GET,
                    "/apis/coordination.k8s.io/v1/namespaces/a/leases",
                    &[("fieldSelector", "metadata.name=l")],
                ),
                res("list", "coordination.k8s.io", "leases", "", "a", "l"),
            ),
            (
                attrs(
                    Method::PATCH,
                    "/apis/nicip.io/v1alpha1/namespaces/a/nicipclaims/c/status",
                    &[],
                ),
                res("patch", "nicip.io", "nicipclaims", "status", "a", "c"),
            ),
            (
                attrs(Method::DELETE, "/api/v1/namespaces/a/secrets", &[]),
                res("deletecollection", "", "secrets", "", "a", ""),
            ),
            (
                attrs(Method::GET, "/api/v1/namespaces/a", &[]),
                res("get", "", "namespaces", "", "a", "a"),
            ),
            (
                attrs(Method::POST, "/api/v1/namespaces", &[]),
                res("create", "", "namespaces", "", "", ""),
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
        for path in [
            "/version",
            "/apis",
            "/api/v1",
            "/apis/nicip.io/v1alpha1",
            "/openapi/v3",
        ] {
            assert_eq!(
                attrs(Method::GET, path, &[]),
                Attributes::NonResource {
                    verb: "get".into(),
                    path: path.into()
                }
            );
        }
    }

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
        let owned = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        PolicyRule {
            api_groups: owned(groups),
            resources: owned(resources),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            resource_names: (!names.is_empty()).then(|| owned(names)).flatten(),
            non_resource_urls: None,
        }
    }

    #[test]
    fn rules_match_as_the_rbac_authorizer_matches_them() {
        let status = res("patch", "nicip.io", "nicipclaims", "status", "a", "c");
        let main = res("patch", "nicip.io", "nicipclaims", "", "a", "c");
        let r = rule(&["nicip.io"], &["nicipclaims"], &["patch"], &[]);
        assert!(allows(&r, &main));
        assert!(
            !allows(&r, &status),
            "a resource does not grant its subresources"
        );
        let r = rule(&["nicip.io"], &["*/status"], &["patch"], &[]);
        assert!(allows(&r, &status) && !allows(&r, &main));
        let r = rule(&["*"], &["*"], &["*"], &[]);
        assert!(allows(&r, &status) && allows(&r, &main));
        let r = rule(&["nicip.io"], &["nicipclaims"], &["patch"], &["other"]);
        assert!(!allows(&r, &main), "resourceNames restrict");
        let list = res("list", "nicip.io", "nicipclaims", "", "a", "");
        let r = rule(&["nicip.io"], &["nicipclaims"], &["list"], &["c"]);
        assert!(
            !allows(&r, &list),
            "a named rule never grants an unnamed list"
        );
        let r = rule(&[""], &["nicipclaims"], &["patch"], &[]);
        assert!(!allows(&r, &main), "the API group must match");
        let urls = PolicyRule {
            non_resource_urls: Some(vec!["/apis/*".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        };
        let get = |p: &str| Attributes::NonResource {
            verb: "get".into(),
            path: p.into(),
        };
        assert!(allows(&urls, &get("/apis/nicip.io")) && !allows(&urls, &get("/api")));
    }

    #[test]
    fn refusals_are_worded_as_kube_apiserver_words_them() {
        let who = "system:serviceaccount:nicip-system:nicip";
        let Refusal::Forbidden { message, details } = forbidden(
            who,
            &res("get", "", "secrets", "", "nicip-system", "creds"),
            "",
        ) else {
            panic!("forbidden")
        };
        assert_eq!(
            message,
            "secrets \"creds\" is forbidden: User \"system:serviceaccount:nicip-system:nicip\" cannot get resource \"secrets\" in API group \"\" in the namespace \"nicip-system\""
        );
        assert_eq!(details, json!({"name": "creds", "kind": "secrets"}));
        let Refusal::Forbidden { message, details } =
            forbidden(who, &res("list", "nicip.io", "nicipclaims", "", "", ""), "")
        else {
            panic!("forbidden")
        };
        assert_eq!(
            message,
            "nicipclaims.nicip.io is forbidden: User \"system:serviceaccount:nicip-system:nicip\" cannot list resource \"nicipclaims\" in API group \"nicip.io\" at the cluster scope"
        );
        assert_eq!(details, json!({"group": "nicip.io", "kind": "nicipclaims"}));
    }
}
