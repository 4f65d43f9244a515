//! The in-memory API server against real clients: kube-rs here, kubectl in
//! the `kubectl_*` tests.

mod support;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::Status;
use kube::runtime::{WatchStreamExt, finalizer, reflector, watcher};
use kube::{CustomResource, CustomResourceExt, KubeSchema, Resource, ResourceExt};
use nicip::kubesim::{KubeSim, RunningKubeSim};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// A small CRD exercising what the project's CRDs use: status subresource,
/// printer columns, short names, a category, defaults, ranges, enums and CEL
/// rules including a transition rule.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "test.nicip.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    shortname = "wd",
    category = "testing",
    printcolumn = r#"{"name":"Size","type":"integer","jsonPath":".spec.size"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[x_kube(validation = Rule::new("self.size != 13").message("thirteen is unlucky"))]
pub struct WidgetSpec {
    /// How big.
    #[schemars(range(min = 1, max = 50))]
    pub size: i32,
    /// Never changes.
    #[x_kube(validation = Rule::new("self == oldSelf").message("color is immutable"))]
    pub color: String,
    #[serde(default = "default_mode")]
    pub mode: Mode,
}

fn default_mode() -> Mode {
    Mode::Full
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
pub enum Mode {
    Full,
    ObserveOnly,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
pub struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

async fn start() -> RunningKubeSim {
    KubeSim::new(vec![Widget::crd()])
        .start()
        .await
        .expect("server starts")
}

/// A server whose watches get a BOOKMARK every 100 ms.
async fn start_bookmarking_every_100ms() -> RunningKubeSim {
    KubeSim::new(vec![Widget::crd()])
        .bookmark_interval(Duration::from_millis(100))
        .start()
        .await
        .expect("server starts")
}

fn widget(name: &str, size: i32) -> Widget {
    let mut w = Widget::new(
        name,
        WidgetSpec {
            size,
            color: "red".into(),
            mode: Mode::Full,
        },
    );
    w.metadata.namespace = Some("default".into());
    w
}

/// A JSON merge patch of the main resource.
async fn merge<K>(api: &Api<K>, name: &str, patch: Value) -> Result<K, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
}

/// A forced server-side apply of a Widget's status, as a controller writes it.
async fn apply_status(
    api: &Api<Widget>,
    name: &str,
    status: impl Serialize + std::fmt::Debug,
) -> Result<Widget, kube::Error> {
    let params = PatchParams::apply("controller").force();
    api.patch_status(name, &params, &Patch::Apply(status)).await
}

/// A Normal `Assigned` event, as the controller publishes.
fn assigned_event(note: &str) -> kube::runtime::events::Event {
    kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Normal,
        reason: "Assigned".into(),
        note: Some(note.into()),
        action: "Assign".into(),
        secondary: None,
    }
}

/// An object's resourceVersion as the number kubesim makes it.
fn rv_of(o: &impl Resource) -> u64 {
    o.meta()
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("numeric resourceVersion")
}

/// The Status has this code, reason and message.
fn assert_status(err: &Status, code: u16, reason: &str, message: &str) {
    assert_eq!(
        (err.code, err.reason.as_str(), err.message.as_str()),
        (code, reason, message)
    );
}

fn api_error(e: kube::Error) -> Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The raw `Status` body of a failed request, for checking `details.causes`.
async fn raw_post(sim: &RunningKubeSim, path: &str, body: &Value) -> (u16, Value) {
    raw(
        sim,
        reqwest::Method::POST,
        path,
        "application/json",
        &body.to_string(),
    )
    .await
}

#[tokio::test]
async fn crud_generation_and_optimistic_concurrency() {
    let sim = start().await;
    let api: Api<Widget> = Api::namespaced(sim.client().expect("client"), "default");
    let created = api
        .create(&PostParams::default(), &widget("a", 3))
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert_eq!(created.spec.mode, Mode::Full);

    // A spec change bumps generation; a label change does not.
    let mut changed = created.clone();
    changed.spec.size = 4;
    let v2 = api
        .replace("a", &PostParams::default(), &changed)
        .await
        .expect("replace");
    assert_eq!(v2.metadata.generation, Some(2));
    let v3 = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .expect("patch");
    assert_eq!(v3.metadata.generation, Some(2));
    // Neither do annotations or finalizers (added, then removed).
    let annotated = merge(
        &api,
        "a",
        json!({"metadata": {"annotations": {"note": "n"}, "finalizers": ["test.nicip.io/keep"]}}),
    )
    .await
    .expect("metadata patch");
    let unfinalized = merge(&api, "a", json!({"metadata": {"finalizers": null}}))
        .await
        .expect("finalizer removed");
    assert_eq!(
        (
            annotated.metadata.generation,
            unfinalized.metadata.generation
        ),
        (Some(2), Some(2))
    );
    assert!(unfinalized.finalizers().is_empty());

    // One resourceVersion counter for the whole cluster, across kinds.
    let secrets: Api<Secret> = Api::namespaced(sim.client().expect("client"), "default");
    let secret = secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "between"}})).expect("secret"),
        )
        .await
        .expect("secret");
    let relabelled = merge(&api, "a", json!({"metadata": {"labels": {"x": "z"}}}))
        .await
        .expect("label");
    let versions = [
        rv_of(&v2),
        rv_of(&v3),
        rv_of(&annotated),
        rv_of(&unfinalized),
        rv_of(&secret),
        rv_of(&relabelled),
    ];
    assert!(versions.is_sorted_by(|a, b| a < b), "{versions:?}");
    assert_eq!(sim.resource_version(), rv_of(&relabelled));

    // The stale copy is refused.
    let err = api_error(
        api.replace("a", &PostParams::default(), &changed)
            .await
            .expect_err("stale"),
    );
    assert_status(
        &err,
        409,
        "Conflict",
        "Operation cannot be fulfilled on widgets.test.nicip.io \"a\": the object has been modified; please apply your changes to the latest version and try again",
    );
    // So are patches carrying a stale resourceVersion, merge and JSON patch alike.
    let stale_rv = changed.resource_version().expect("rv");
    let err = api_error(
        merge(
            &api,
            "a",
            json!({"metadata": {"resourceVersion": stale_rv}, "spec": {"size": 5}}),
        )
        .await
        .expect_err("stale merge patch"),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    let err = api_error(
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::<()>::Json(
                serde_json::from_value(json!([
                    {"op": "replace", "path": "/metadata/resourceVersion", "value": stale_rv},
                    {"op": "replace", "path": "/spec/size", "value": 5}
                ]))
                .expect("patch"),
            ),
        )
        .await
        .expect_err("stale JSON patch"),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    let err = api_error(
        api.patch(
            "a",
            // Forced, so only the stale resourceVersion can refuse it.
            &PatchParams::apply("applier").force(),
            &Patch::Apply(json!({"apiVersion": "test.nicip.io/v1", "kind": "Widget",
                "metadata": {"resourceVersion": stale_rv}, "spec": {"size": 5, "color": "red"}})),
        )
        .await
        .expect_err("stale apply"),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert_eq!(api.get("a").await.expect("get").spec.size, 4);

    // Writes to the main resource never change status; status writes change nothing else.
    let with_status = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"note": "sneaky"}})),
        )
        .await
        .expect("patch");
    assert_eq!(with_status.status, None);
    let st = api
        .patch_status(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 9}, "status": {"note": "hi"}})),
        )
        .await
        .expect("patch status");
    assert_eq!(
        (
            st.spec.size,
            st.status.as_ref().and_then(|s| s.note.as_deref())
        ),
        (4, Some("hi"))
    );
    assert_eq!(st.metadata.generation, Some(2));

    // No-op writes are not persisted.
    let again = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 4}})),
        )
        .await
        .expect("noop");
    assert_eq!(again.resource_version(), st.resource_version());

    let dry = api
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &widget("dry", 3),
        )
        .await
        .expect("dry run");
    assert_eq!(dry.name_any(), "dry");
    assert_eq!(
        api_error(api.get("dry").await.expect_err("not stored")).code,
        404
    );

    let err = api_error(
        api.create(&PostParams::default(), &widget("a", 3))
            .await
            .expect_err("exists"),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    let err = api_error(api.get("missing").await.expect_err("missing"));
    assert_status(
        &err,
        404,
        "NotFound",
        "widgets.test.nicip.io \"missing\" not found",
    );

    let mut generated = widget("", 5);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let g = api
        .create(&PostParams::default(), &generated)
        .await
        .expect("generateName");
    assert!(
        g.name_any().starts_with("gen-") && g.name_any().len() == 9,
        "{}",
        g.name_any()
    );

    api.delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    let err = api_error(api.get("a").await.expect_err("gone"));
    assert_eq!(err.code, 404);

    // Nothing is created in a namespace that does not exist, by create or apply.
    let other: Api<Widget> = Api::namespaced(sim.client().expect("client"), "elsewhere");
    let mut w = widget("b", 2);
    w.metadata.namespace = Some("elsewhere".into());
    let err = api_error(
        other
            .create(&PostParams::default(), &w)
            .await
            .expect_err("no such namespace"),
    );
    assert_status(&err, 404, "NotFound", r#"namespaces "elsewhere" not found"#);
    let details = err.details.expect("details");
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("elsewhere", "namespaces")
    );
    let err = api_error(
        other
            .patch("b", &PatchParams::apply("alice"), &Patch::Apply(&w))
            .await
            .expect_err("no such namespace"),
    );
    assert_status(&err, 404, "NotFound", r#"namespaces "elsewhere" not found"#);
    let ns = create_namespace(&sim, "elsewhere").await;
    assert_eq!(
        ns.labels()
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("elsewhere"),
        "the automatic name label"
    );
    other
        .create(&PostParams::default(), &w)
        .await
        .expect("create in the new namespace");
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> =
        Api::all(sim.client().expect("client"));
    let names: Vec<String> = namespaces
        .list(&ListParams::default().labels("kubernetes.io/metadata.name"))
        .await
        .expect("list")
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert_eq!(
        names,
        [
            "default",
            "elsewhere",
            "kube-node-lease",
            "kube-public",
            "kube-system"
        ],
        "the namespaces kube-apiserver starts with, and the new one"
    );
    // The label is kept on updates too.
    let relabelled = namespaces
        .patch(
            "elsewhere",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"kubernetes.io/metadata.name": "other", "team": "a"}}})),
        )
        .await
        .expect("label");
    assert_eq!(
        relabelled
            .labels()
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("elsewhere")
    );
}

/// Create a namespace, as a test's setup must before using it.
async fn create_namespace(
    sim: &RunningKubeSim,
    name: &str,
) -> k8s_openapi::api::core::v1::Namespace {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> =
        Api::all(sim.client().expect("client"));
    let ns = serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace")
}

#[tokio::test]
async fn schema_validation_defaulting_pruning_and_cel() {
    let sim = start().await;
    let api: Api<Widget> = Api::namespaced(sim.client().expect("client"), "default");
    let path = "/apis/test.nicip.io/v1/namespaces/default/widgets";
    let obj = |size: Value| json!({"apiVersion": "test.nicip.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": size, "color": "red"}});

    let (code, status) = raw_post(&sim, path, &obj(json!(0))).await;
    assert_eq!((code, status["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(
        status["message"],
        "Widget.test.nicip.io \"w\" is invalid: spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
    );
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldValueInvalid", "field": "spec.size",
        "message": "Invalid value: 0: spec.size in body should be greater than or equal to 1"}])
    );

    let mut bad_enum = obj(json!(2));
    bad_enum["spec"]["mode"] = json!("Sometimes");
    let (code, status) = raw_post(&sim, path, &bad_enum).await;
    assert_eq!(code, 422);
    // An enum error keeps the CEL rules from running, and kube-apiserver says so.
    let causes: Vec<(&str, &str)> = status["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .map(|c| {
            (
                c["reason"].as_str().unwrap_or_default(),
                c["field"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        causes,
        [
            ("FieldValueNotSupported", "spec.mode"),
            ("FieldValueInvalid", "<nil>")
        ]
    );

    let (code, status) = raw_post(&sim, path, &obj(json!(13))).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldValueInvalid", "field": "spec",
            "message": "Invalid value: \"object\": thirteen is unlucky"}])
    );

    // Unknown fields are pruned (with a warning), defaults applied.
    let mut extra = obj(json!(2));
    extra["spec"]["bogus"] = json!(true);
    let (code, created) = raw_post(&sim, path, &extra).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["spec"],
        json!({"size": 2, "color": "red", "mode": "Full"})
    );
    let strict = reqwest::Client::new()
        .post(format!("{}{path}?fieldValidation=Strict", sim.url()))
        .json(&{
            let mut o = extra.clone();
            o["metadata"]["name"] = json!("strict");
            o
        })
        .send()
        .await
        .expect("request");
    assert_eq!(strict.status().as_u16(), 400);
    assert!(
        strict
            .text()
            .await
            .unwrap_or_default()
            .contains(r#"unknown field \"spec.bogus\""#)
    );

    // Transition rule: color is immutable.
    let err = api_error(
        merge(&api, "w", json!({"spec": {"color": "blue"}}))
            .await
            .expect_err("immutable"),
    );
    // As kube-apiserver, a CEL failure shows the type of the rule's schema, not the value.
    assert_status(
        &err,
        422,
        "Invalid",
        "Widget.test.nicip.io \"w\" is invalid: spec.color: Invalid value: \"string\": color is immutable",
    );
    let causes = err.details.expect("details").causes;
    assert_eq!(
        causes
            .iter()
            .map(|c| (c.reason.as_str(), c.field.as_str(), c.message.as_str()))
            .collect::<Vec<_>>(),
        [(
            "FieldValueInvalid",
            "spec.color",
            "Invalid value: \"string\": color is immutable"
        )]
    );
    // A range error does not: the transition rule is reported beside it, on update.
    let err = api_error(
        merge(&api, "w", json!({"spec": {"size": 0, "color": "blue"}}))
            .await
            .expect_err("two errors"),
    );
    assert_eq!(
        err.details
            .expect("details")
            .causes
            .iter()
            .map(|c| c.field.as_str())
            .collect::<Vec<_>>(),
        ["spec.size", "spec.color"]
    );
    merge(&api, "w", json!({"spec": {"size": 3}}))
        .await
        .expect("other changes pass");

    // The public validator, as CRD tests use it.
    let crd = Widget::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("schema");
    let errs = nicip::kubesim::schema::validate(
        schema,
        &json!({"spec": {"size": 51, "color": "c", "mode": "Full"}}),
        None,
    )
    .expect_err("too big");
    assert_eq!(
        errs[0].to_string(),
        "spec.size: Invalid value: 51: spec.size in body should be less than or equal to 50"
    );
}

#[tokio::test]
async fn finalizers_with_kube_runtime_helper() {
    let sim = start().await;
    let api: Api<Widget> = Api::namespaced(sim.client().expect("client"), "default");
    api.create(&PostParams::default(), &widget("f", 3))
        .await
        .expect("create");
    let run = |obj: Widget| {
        let api = api.clone();
        async move {
            finalizer(
                &api,
                "test.nicip.io/cleanup",
                Arc::new(obj),
                |ev| async move {
                    Ok::<_, std::io::Error>(match ev {
                        finalizer::Event::Apply(_) | finalizer::Event::Cleanup(_) => {
                            kube::runtime::controller::Action::await_change()
                        }
                    })
                },
            )
            .await
        }
    };
    run(api.get("f").await.expect("get"))
        .await
        .expect("adds the finalizer");
    let with = api.get("f").await.expect("get");
    assert_eq!(with.finalizers(), ["test.nicip.io/cleanup"]);

    api.delete("f", &DeleteParams::default())
        .await
        .expect("delete marks");
    let marked = api.get("f").await.expect("still there");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(
        marked.metadata.generation,
        Some(2),
        "deletion bumps generation"
    );

    let err = api_error(
        merge(
            &api,
            "f",
            json!({"metadata": {"finalizers": ["test.nicip.io/cleanup", "late"]}}),
        )
        .await
        .expect_err("no new finalizers while deleting"),
    );
    assert_status(
        &err,
        422,
        "Invalid",
        r#"Widget.test.nicip.io "f" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"late"}"#,
    );
    let cause = &err.details.expect("details").causes[0];
    assert_eq!(
        (cause.reason.as_str(), cause.field.as_str()),
        ("FieldValueForbidden", "metadata.finalizers")
    );
    // Deleting again while finalizers are pending changes nothing.
    let again = api
        .delete("f", &DeleteParams::default())
        .await
        .expect("delete again");
    assert_eq!(
        again.left().map(|w| w.resource_version()),
        Some(marked.resource_version())
    );
    // The spec may still change while terminating.
    merge(&api, "f", json!({"spec": {"size": 4}}))
        .await
        .expect("spec change");

    run(api.get("f").await.expect("get"))
        .await
        .expect("cleanup removes the finalizer");
    assert_eq!(api_error(api.get("f").await.expect_err("gone")).code, 404);
}

#[tokio::test]
async fn server_side_apply_owns_fields_and_reports_conflicts() {
    let sim = start().await;
    let api: Api<Widget> = Api::namespaced(sim.client().expect("client"), "default");
    let config = json!({"apiVersion": "test.nicip.io/v1", "kind": "Widget", "metadata": {"name": "s"}, "spec": {"size": 2, "color": "red"}});
    let created = api
        .patch("s", &PatchParams::apply("alice"), &Patch::Apply(&config))
        .await
        .expect("apply creates");
    assert_eq!(created.metadata.generation, Some(1));
    let err = api_error(
        api.patch("s", &PatchParams::apply("bob"), &Patch::Apply(json!({"apiVersion": "test.nicip.io/v1", "kind": "Widget", "spec": {"size": 5, "color": "red"}})))
            .await
            .expect_err("conflict"),
    );
    // An applier is named alone, as kube-apiserver does.
    assert_status(
        &err,
        409,
        "Conflict",
        r#"Apply failed with 1 conflict: conflict with "alice": .spec.size"#,
    );
    let details = err.details.expect("details");
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("", ""),
        "apply conflicts name no object"
    );
    let cause = &details.causes[0];
    assert_eq!(
        (
            cause.reason.as_str(),
            cause.field.as_str(),
            cause.message.as_str()
        ),
        (
            "FieldManagerConflict",
            ".spec.size",
            r#"conflict with "alice""#
        )
    );
    let forced = api
        .patch("s", &PatchParams::apply("bob").force(), &Patch::Apply(json!({"apiVersion": "test.nicip.io/v1", "kind": "Widget", "spec": {"size": 5, "color": "red"}})))
        .await
        .expect("forced");
    assert_eq!(forced.spec.size, 5);
    let managers: Vec<(String, String)> = forced
        .managed_fields()
        .iter()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        managers,
        [
            ("alice".to_string(), "Apply".to_string()),
            ("bob".to_string(), "Apply".to_string())
        ]
    );
    // An update takes the field from the applier; the applier then conflicts
    // with an updater, named with its API version and time.
    let carol = api
        .patch(
            "s",
            &PatchParams {
                field_manager: Some("carol".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"spec": {"size": 6}})),
        )
        .await
        .expect("update");
    let carol_time = carol
        .managed_fields()
        .iter()
        .find(|m| m.manager.as_deref() == Some("carol"))
        .and_then(|m| m.time.as_ref())
        .map(|t| t.0.to_string())
        .expect("carol's entry");
    let err = api_error(
        api.patch("s", &PatchParams::apply("bob"), &Patch::Apply(json!({"apiVersion": "test.nicip.io/v1", "kind": "Widget", "spec": {"size": 5, "color": "red"}})))
            .await
            .expect_err("conflict with an updater"),
    );
    assert_eq!(
        err.message,
        r#"Apply failed with 1 conflict: conflict with "carol" using test.nicip.io/v1: .spec.size"#,
        "an updater is named with its API version, not its time (written {carol_time})"
    );

    // Apply types its configuration: an undeclared field fails it outright,
    // with kube-apiserver's untyped 500.
    let err = api_error(
        api.patch(
            "s",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(json!({"apiVersion": "test.nicip.io/v1", "kind": "Widget",
            "metadata": {"name": "s"}, "spec": {"size": 5, "colour": "red"}})),
        )
        .await
        .expect_err("undeclared field"),
    );
    // The object as the configuration names it: no namespace there.
    assert_status(
        &err,
        500,
        "",
        "failed to create typed patch object (/s; test.nicip.io/v1, Kind=Widget): .spec.colour: field not declared in schema",
    );

    // Status through the status subresource with apply, as the controller writes it.
    let status = json!({"apiVersion": "test.nicip.io/v1", "kind": "Widget", "status": {"observed": 1, "note": "ok"}});
    let st = apply_status(&api, "s", &status)
        .await
        .expect("status apply");
    assert_eq!(st.status.as_ref().and_then(|s| s.observed), Some(1));
    assert_eq!(
        st.metadata.generation, carol.metadata.generation,
        "status writes never bump generation"
    );
    let entry = st
        .managed_fields()
        .iter()
        .find(|m| m.manager.as_deref() == Some("controller"))
        .expect("controller entry");
    assert_eq!(entry.subresource.as_deref(), Some("status"));
    // Re-applying the same status is a no-op; dropping a field removes it.
    let same = apply_status(&api, "s", &status).await.expect("again");
    assert_eq!(same.resource_version(), st.resource_version());
    let dropped = apply_status(
        &api,
        "s",
        json!({"apiVersion": "test.nicip.io/v1", "kind": "Widget", "status": {"observed": 2}}),
    )
    .await
    .expect("drop note");
    assert_eq!(
        dropped.status,
        Some(WidgetStatus {
            observed: Some(2),
            note: None
        })
    );

    // A status apply to a missing object is a 404, and apply needs a field manager.
    let err = api_error(
        api.patch_status(
            "nope",
            &PatchParams::apply("controller"),
            &Patch::Apply(&status),
        )
        .await
        .expect_err("missing"),
    );
    assert_eq!(err.code, 404);
    let writes: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.verb == "patch" && r.field_manager.as_deref() == Some("controller"))
        .collect();
    assert_eq!(writes.len(), 4);
    assert_eq!(writes[0].subresource.as_deref(), Some("status"));
    assert_eq!((writes[0].code, writes[3].code), (200, 404));
}

#[tokio::test]
async fn list_pages_and_selectors() {
    let sim = start().await;
    let api: Api<Widget> = Api::namespaced(sim.client().expect("client"), "default");
    for i in 0..5 {
        let mut w = widget(&format!("w{i}"), i + 1);
        w.metadata.labels = Some(
            [(
                "parity".to_string(),
                if i % 2 == 0 { "even" } else { "odd" }.to_string(),
            )]
            .into(),
        );
        api.create(&PostParams::default(), &w)
            .await
            .expect("create");
    }
    let first = api
        .list(&ListParams::default().limit(2))
        .await
        .expect("page 1");
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let token = first.metadata.continue_.clone().expect("continue token");
    let second = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("page 2");
    let names: Vec<String> = first
        .items
        .iter()
        .chain(second.items.iter())
        .map(|w| w.name_any())
        .collect();
    assert_eq!(names, ["w0", "w1", "w2", "w3"]);
    // Every label selector operator; w4 also carries a `tier` label.
    merge(&api, "w4", json!({"metadata": {"labels": {"tier": "web"}}}))
        .await
        .expect("label");
    create_namespace(&sim, "other").await;
    let elsewhere: Api<Widget> = Api::namespaced(sim.client().expect("client"), "other");
    let mut far = widget("w9", 1);
    far.metadata.namespace = Some("other".into());
    far.metadata.labels = Some([("parity".to_string(), "odd".to_string())].into());
    elsewhere
        .create(&PostParams::default(), &far)
        .await
        .expect("create elsewhere");
    let all: Api<Widget> = Api::all(sim.client().expect("client"));
    let names = |params: ListParams| {
        let all = all.clone();
        async move {
            all.list(&params)
                .await
                .unwrap_or_else(|e| panic!("list {params:?}: {e}"))
                .items
                .iter()
                .map(|w| w.name_any())
                .collect::<Vec<_>>()
        }
    };
    for (selector, want) in [
        ("parity=even", vec!["w0", "w2", "w4"]),
        ("parity==odd", vec!["w1", "w3", "w9"]),
        ("parity!=even", vec!["w1", "w3", "w9"]),
        ("parity in (odd, other)", vec!["w1", "w3", "w9"]),
        ("parity notin (odd)", vec!["w0", "w2", "w4"]),
        ("tier", vec!["w4"]),
        ("!tier,parity=even", vec!["w0", "w2"]),
    ] {
        assert_eq!(
            names(ListParams::default().labels(selector)).await,
            want,
            "{selector}"
        );
    }
    assert_eq!(
        names(ListParams::default().fields("metadata.name=w3")).await,
        ["w3"]
    );
    assert_eq!(
        names(ListParams::default().fields("metadata.namespace=other")).await,
        ["w9"]
    );
    assert_eq!(
        names(ListParams::default().fields("metadata.namespace!=default,metadata.name!=w1")).await,
        ["w9"]
    );
    let err = api_error(
        api.list(&ListParams::default().labels("parity=not valid"))
            .await
            .expect_err("malformed selector"),
    );
    assert_eq!((err.code, err.reason.as_str()), (400, "BadRequest"));
    let err = api_error(
        api.list(&ListParams::default().fields("spec.size=1"))
            .await
            .expect_err("unsupported field"),
    );
    assert_eq!(
        (err.code, err.reason.as_str(), err.message.as_str()),
        (400, "BadRequest", "field label not supported: spec.size")
    );
    // Once the history is compacted past the first page's version, its token
    // expires; the 410 carries a token that goes on at the current version.
    api.create(&PostParams::default(), &widget("late", 1))
        .await
        .expect("create");
    sim.compact();
    let err = api_error(
        api.list(&ListParams::default().limit(2).continue_token(&token))
            .await
            .expect_err("expired token"),
    );
    assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));
    assert!(
        err.message.starts_with(
            "The provided continue parameter is too old to display a consistent list result."
        ),
        "{}",
        err.message
    );
    let fresh = err
        .metadata
        .and_then(|m| m.continue_)
        .expect("a token in the 410");
    let rest = api
        .list(&ListParams::default().continue_token(&fresh))
        .await
        .expect("inconsistent continuation");
    assert_eq!(
        rest.items.iter().map(|w| w.name_any()).collect::<Vec<_>>(),
        ["w2", "w3", "w4"],
        "the rest after the expired page, at the current version"
    );
}

#[tokio::test]
async fn watch_bookmarks_and_gone() {
    let sim = start_bookmarking_every_100ms().await;
    let api: Api<Widget> = Api::namespaced(sim.client().expect("client"), "default");
    let created = api
        .create(&PostParams::default(), &widget("a", 1))
        .await
        .expect("create");
    let rv = created.resource_version().expect("rv");
    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .expect("watch")
        .boxed();
    api.create(&PostParams::default(), &widget("b", 1))
        .await
        .expect("create");
    merge(&api, "a", json!({"spec": {"size": 2}}))
        .await
        .expect("patch");
    api.delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 4 && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await {
            Ok(Ok(Some(WatchEvent::Added(w)))) => seen.push(format!("ADDED {}", w.name_any())),
            Ok(Ok(Some(WatchEvent::Modified(w)))) => seen.push(format!("MODIFIED {}", w.spec.size)),
            Ok(Ok(Some(WatchEvent::Deleted(w)))) => seen.push(format!("DELETED {}", w.name_any())),
            Ok(Ok(Some(WatchEvent::Bookmark(b)))) => {
                if seen.len() == 3 {
                    seen.push(format!(
                        "BOOKMARK after {}",
                        b.metadata.resource_version.parse::<u64>().is_ok()
                    ));
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        ["ADDED b", "MODIFIED 2", "DELETED a", "BOOKMARK after true"]
    );

    // `timeoutSeconds` ends the stream (the server's own limit is 30 minutes).
    let started = tokio::time::Instant::now();
    let mut short = api
        .watch(
            &WatchParams::default().timeout(1).disable_bookmarks(),
            &sim.resource_version().to_string(),
        )
        .await
        .expect("watch")
        .boxed();
    let ended = tokio::time::timeout(Duration::from_secs(10), short.try_next()).await;
    assert!(
        matches!(ended, Ok(Ok(None))),
        "expected the stream to end, got {ended:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));

    // `sendInitialEvents=false` skips the synthetic ADDED events a watch from
    // no resourceVersion starts with.
    let body = |query: &'static str| {
        let url = format!(
            "{}/apis/test.nicip.io/v1/namespaces/default/widgets?watch=true&timeoutSeconds=1{query}",
            sim.url()
        );
        async move {
            reqwest::get(url)
                .await
                .expect("watch")
                .text()
                .await
                .expect("stream")
        }
    };
    assert!(body("").await.contains(r#""type":"ADDED""#));
    assert_eq!(
        body("&sendInitialEvents=false&resourceVersionMatch=NotOlderThan").await,
        ""
    );

    sim.compact();
    let mut stale = api
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("watch")
        .boxed();
    match stale.try_next().await {
        Ok(Some(WatchEvent::Error(e))) => assert_eq!(
            (e.code, e.reason.as_str(), e.message.as_str()),
            (
                410,
                "Expired",
                format!(
                    "too old resource version: {rv} ({})",
                    sim.resource_version()
                )
                .as_str()
            )
        ),
        other => panic!("expected 410, got {other:?}"),
    }

    // A label change moves an object out of a selector's view: DELETED.
    let mut labelled = widget("l", 1);
    labelled.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
    let l = api
        .create(&PostParams::default(), &labelled)
        .await
        .expect("create");
    let mut selected = api
        .watch(
            &WatchParams::default().labels("team=a").disable_bookmarks(),
            &l.resource_version().expect("rv"),
        )
        .await
        .expect("watch")
        .boxed();
    merge(&api, "l", json!({"metadata": {"labels": {"team": "b"}}}))
        .await
        .expect("relabel");
    match tokio::time::timeout(Duration::from_secs(5), selected.try_next()).await {
        Ok(Ok(Some(WatchEvent::Deleted(w)))) => {
            // As kube-apiserver's cacher: the object as it matched.
            assert_eq!(w.labels().get("team").map(String::as_str), Some("a"))
        }
        other => panic!("expected DELETED, got {other:?}"),
    }

    // Dropping the server ends open watches.
    let mut open = api
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();
    assert!(matches!(
        open.try_next().await,
        Ok(Some(WatchEvent::Added(_)))
    ));
    drop(sim);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = open.try_next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the watch outlived the server");
}

#[tokio::test]
async fn reflector_stays_consistent_across_watch_restarts() {
    // Watches end after a second, so the watcher resumes from its last
    // resourceVersion several times; once it resumes from before a compaction,
    // gets 410 Gone and relists. Without bookmarks, only widget events move its
    // resourceVersion on.
    let sim = KubeSim::new(vec![Widget::crd()])
        .watch_timeout(Duration::from_secs(1))
        .start()
        .await
        .expect("starts");
    let client = sim.client().expect("client");
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    let (reader, writer) = reflector::store::<Widget>();
    let cfg = watcher::Config::default().timeout(1).disable_bookmarks();
    let stream = reflector(writer, watcher(api.clone(), cfg))
        .applied_objects()
        .default_backoff();
    let task = tokio::spawn(async move { stream.for_each(|_| async {}).await });
    // The reflector's own lists (the test lists across namespaces).
    let lists = || {
        sim.requests()
            .iter()
            .filter(|r| r.verb == "list" && r.namespace.as_deref() == Some("default"))
            .count()
    };
    for i in 0..6 {
        api.create(&PostParams::default(), &widget(&format!("r{i}"), 1))
            .await
            .expect("create");
        if i == 2 {
            // Only a Secret changes before the history goes, so the watcher's
            // next resume is from before the compaction.
            let before = lists();
            let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
            secrets
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": "s"}})).expect("secret"),
                )
                .await
                .expect("secret");
            sim.compact();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while lists() == before {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no relist after the compaction"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } else {
            // Spread the changes over several watches.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if i % 2 == 1 {
            api.delete(&format!("r{}", i - 1), &DeleteParams::default())
                .await
                .expect("delete");
        }
        merge(&api, &format!("r{i}"), json!({"spec": {"size": 7}}))
            .await
            .expect("patch");
    }
    let all: Api<Widget> = Api::all(client);
    let mut expected: Vec<String> = all
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|w| format!("{}={}", w.name_any(), w.spec.size))
        .collect();
    expected.sort();
    assert_eq!(expected, ["r1=7", "r3=7", "r5=7"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut have: Vec<String> = reader
            .state()
            .iter()
            .map(|w| format!("{}={}", w.name_any(), w.spec.size))
            .collect();
        have.sort();
        let watches = sim.requests().iter().filter(|r| r.verb == "watch").count();
        if have == expected && watches >= 3 {
            assert_eq!(lists(), 2, "the initial list and one relist");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reflector {have:?} never matched {expected:?} ({watches} watches)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
}

#[tokio::test]
async fn events_secrets_and_leases() {
    let sim = start().await;
    let client = sim.client().expect("client");
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let w = widgets
        .create(&PostParams::default(), &widget("e", 1))
        .await
        .expect("create");
    let recorder = kube::runtime::events::Recorder::new(client.clone(), "test-controller".into());
    recorder
        .publish(&assigned_event("assigned 10.0.0.5"), &w.object_ref(&()))
        .await
        .expect("publish");
    // The same event through the core API, found as kubectl describe looks for it.
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let found = core
        .list(&ListParams::default().fields("involvedObject.name=e,involvedObject.kind=Widget"))
        .await
        .expect("list");
    assert_eq!(found.items.len(), 1);
    assert_eq!(found.items[0].message.as_deref(), Some("assigned 10.0.0.5"));
    assert_eq!(found.items[0].reason.as_deref(), Some("Assigned"));
    // A repeat becomes a series on the same Event, patched through events.k8s.io.
    let ev = assigned_event("assigned 10.0.0.5");
    recorder
        .publish(&ev, &w.object_ref(&()))
        .await
        .expect("publish again");
    let found = core
        .list(&ListParams::default().fields("involvedObject.name=e"))
        .await
        .expect("list");
    assert_eq!(found.items.len(), 1);
    assert_eq!(
        found.items[0].series.as_ref().map(|s| s.count),
        Some(Some(2))
    );

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let s: Secret = serde_json::from_value(
        json!({"metadata": {"name": "creds"}, "stringData": {"key": "c2VjcmV0"}}),
    )
    .expect("secret");
    let stored = secrets
        .create(&PostParams::default(), &s)
        .await
        .expect("create secret");
    assert_eq!(stored.type_.as_deref(), Some("Opaque"));
    assert_eq!(
        stored
            .data
            .as_ref()
            .and_then(|d| d.get("key"))
            .map(|b| b.0.clone()),
        Some(b"c2VjcmV0".to_vec())
    );
    assert!(stored.string_data.is_none());
    // What would not decode into a Secret is refused, not stored as something else.
    for (body, detail) in [
        (
            json!({"metadata": {"name": "n"}, "stringData": {"k": 5}}),
            "json: cannot unmarshal number into Go struct field Secret.stringData of type string",
        ),
        (
            json!({"metadata": {"name": "b"}, "data": {"k": "bm90!c2VjcmV0"}}),
            "illegal base64 data at input byte 4",
        ),
    ] {
        let (code, status) = raw_post(&sim, "/api/v1/namespaces/default/secrets", &body).await;
        assert_eq!(code, 400, "{status}");
        let message = status["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(r#"Secret in version "v1" cannot be handled as a Secret: "#)
                && message.contains(detail),
            "{message}"
        );
    }

    let leases: Api<Lease> = Api::namespaced(client, "kube-system");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "nicip"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}})).expect("lease");
    let l = leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("create lease");
    let mut taken = l.clone();
    taken.spec.as_mut().expect("spec").holder_identity = Some("b".into());
    leases
        .replace("nicip", &PostParams::default(), &taken)
        .await
        .expect("take over");
    let err = api_error(
        leases
            .replace("nicip", &PostParams::default(), &l)
            .await
            .expect_err("stale lease"),
    );
    assert_eq!(err.code, 409);
    assert_eq!(
        l.metadata.generation, None,
        "built-in kinds here carry no generation"
    );
}

/// kubectl from `tests/requirements.txt`, pointed at one server with a
/// kubeconfig and discovery cache of its own.
struct Kubectl {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(sim: &RunningKubeSim) -> Kubectl {
        let bin = support::PythonTools::get().bin("kubectl");
        let dir = tempfile::tempdir().expect("tempdir");
        sim.write_kubeconfig(&dir.path().join("config"))
            .expect("kubeconfig");
        Kubectl { bin, dir }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.arg("--kubeconfig").arg(self.dir.path().join("config"));
        cmd.arg("--cache-dir").arg(self.dir.path().join("cache"));
        cmd.args(args)
            .env("HOME", self.dir.path())
            .kill_on_drop(true);
        cmd
    }

    /// Run to completion: (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.command(args).output().await.expect("kubectl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args).await;
        assert!(ok, "kubectl {args:?} failed:\n{stdout}\n{stderr}");
        stdout
    }
}

fn examples() -> String {
    format!("{}/deploy/examples/", env!("CARGO_MANIFEST_DIR"))
}

async fn start_project() -> RunningKubeSim {
    KubeSim::new(nicip::api::crds())
        .start()
        .await
        .expect("server starts")
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_apply_get_patch_describe_delete_project_resources() {
    let sim = start_project().await;
    let k = Kubectl::new(&sim);
    // The examples' credentials live in the controller's namespace.
    create_namespace(&sim, "nicip-system").await;
    let out = k.ok(&["apply", "-f", &examples()]).await;
    assert!(
        out.contains("nicipclaim.nicip.io/web-frontend created"),
        "{out}"
    );
    assert!(
        out.contains("providerconfig.nicip.io/default created"),
        "{out}"
    );
    assert!(out.contains("secret/zenlayer-credentials created"), "{out}");
    // kubectl (and Helm) look CRDs up.
    let crds = k.ok(&["get", "crd", "-o", "name"]).await;
    assert!(
        crds.contains("customresourcedefinition.apiextensions.k8s.io/nicipclaims.nicip.io"),
        "{crds}"
    );
    let again = k.ok(&["apply", "-f", &examples()]).await;
    assert!(
        again.contains("nicipclaim.nicip.io/web-frontend unchanged"),
        "{again}"
    );

    let table = k.ok(&["get", "nicipclaims"]).await;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "READY", "REASON", "NIC", "IPV4", "IPV6", "INSTANCE", "AGE"
        ],
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("web-frontend") && l.contains("nic-web-frontend")),
        "{table}"
    );
    let wide = k.ok(&["get", "nic", "-o", "wide"]).await;
    assert!(
        wide.lines()
            .next()
            .unwrap_or_default()
            .contains("ADDRESSES"),
        "{wide}"
    );
    let category = k.ok(&["get", "nicip", "-A"]).await;
    assert!(category.contains("ingress-pool"), "{category}");
    let cluster = k.ok(&["get", "providerconfigs"]).await;
    assert!(
        cluster.lines().any(|l| l.starts_with("tencent-guangzhou")
            && l.contains("Tencent")
            && l.contains("ap-guangzhou")),
        "{cluster}"
    );

    let status = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Converged","message":"ok","lastTransitionTime":"2026-01-01T00:00:00Z","observedGeneration":1}]}}"#;
    k.ok(&[
        "patch",
        "nicipclaim",
        "web-frontend",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ])
    .await;
    let row = k
        .ok(&["get", "nicipclaim", "web-frontend", "--no-headers"])
        .await;
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cells[..4],
        ["web-frontend", "True", "Converged", "nic-web-frontend"],
        "{row}"
    );

    // An Event a kube-rs Recorder writes (events.k8s.io) shows up in describe (core v1).
    let claims: Api<nicip::api::v1alpha1::NicIpClaim> =
        Api::namespaced(sim.client().expect("client"), "default");
    let claim = claims.get("web-frontend").await.expect("claim");
    let recorder = kube::runtime::events::Recorder::new(
        sim.client().expect("client"),
        "nicip-controller".into(),
    );
    let ev = assigned_event("assigned 10.10.0.20");
    recorder
        .publish(&ev, &claim.object_ref(&()))
        .await
        .expect("publish");
    let described = k.ok(&["describe", "nicipclaim", "web-frontend"]).await;
    for want in [
        "Name:",
        "web-frontend",
        "Nic Id:",
        "nic-web-frontend",
        "Converged",
        "Normal  Assigned",
        "nicip-controller  assigned 10.10.0.20",
    ] {
        assert!(
            described.contains(want),
            "describe lacks {want}:\n{described}"
        );
    }

    // A CEL/schema rejection reaches the user as kube-apiserver words it.
    let bad = k.dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: nicip.io/v1alpha1\nkind: NicIpClaim\nmetadata:\n  name: bad\nspec:\n  nicId: nic-1\n  ipv4:\n    count: 0\n").expect("write");
    let (ok, _, stderr) = k
        .run(&["apply", "-f", bad.to_str().unwrap_or_default()])
        .await;
    assert!(
        !ok && stderr.contains("is invalid") && stderr.contains("spec.ipv4"),
        "{stderr}"
    );

    // kubectl validates strictly by default, through the server.
    std::fs::write(&bad, "apiVersion: nicip.io/v1alpha1\nkind: NicIpClaim\nmetadata:\n  name: typo\nspec:\n  nicId: nic-1\n  nicID: nic-2\n  ipv4:\n    count: 1\n").expect("write");
    let (ok, _, stderr) = k
        .run(&["apply", "-f", bad.to_str().unwrap_or_default()])
        .await;
    assert!(
        !ok && stderr.contains(r#"strict decoding error: unknown field "spec.nicID""#),
        "{stderr}"
    );
    // On an existing object kubectl patches, and the same error is an invalid patch.
    std::fs::write(&bad, "apiVersion: nicip.io/v1alpha1\nkind: NicIpClaim\nmetadata:\n  name: web-frontend\nspec:\n  nicId: nic-web-frontend\n  nicID: nic-2\n").expect("write");
    let (ok, _, stderr) = k
        .run(&["apply", "-f", bad.to_str().unwrap_or_default()])
        .await;
    assert!(
        !ok && stderr.contains("The request is invalid: patch: Invalid value: ")
            && stderr.ends_with("\": strict decoding error: unknown field \"spec.nicID\"\n"),
        "{stderr}"
    );

    // kubectl's imperative `create` sends protobuf for built-in kinds, which
    // kubesim refuses by name rather than misreading.
    let (ok, _, stderr) = k
        .run(&["create", "secret", "generic", "x", "--from-literal=a=b"])
        .await;
    assert!(
        !ok && stderr.contains("kubesim does not decode application/vnd.kubernetes.protobuf"),
        "{stderr}"
    );

    // Discovery lists every built-in kind and the project's CRDs.
    let resources = k.ok(&["api-resources", "--no-headers", "-o", "name"]).await;
    let mut names: Vec<&str> = resources.lines().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "clusterrolebindings.rbac.authorization.k8s.io",
            "clusterroles.rbac.authorization.k8s.io",
            "customresourcedefinitions.apiextensions.k8s.io",
            "events",
            "events.events.k8s.io",
            "leases.coordination.k8s.io",
            "namespaces",
            "nicipclaims.nicip.io",
            "providerconfigs.nicip.io",
            "rolebindings.rbac.authorization.k8s.io",
            "roles.rbac.authorization.k8s.io",
            "secrets",
            "serviceaccounts"
        ]
    );

    let explained = k.ok(&["explain", "nicipclaim.spec"]).await;
    assert!(explained.contains("nicId"), "{explained}");

    let out = k.ok(&["delete", "nicipclaim", "web-frontend"]).await;
    assert!(out.contains("deleted"), "{out}");
    let (ok, _, stderr) = k.run(&["get", "nicipclaim", "web-frontend"]).await;
    assert!(
        !ok && stderr.contains(r#"nicipclaims.nicip.io "web-frontend" not found"#),
        "{stderr}"
    );

    let writes: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.resource == "nicipclaims" && r.verb == "patch")
        .collect();
    let seen: Vec<(Option<&str>, Option<&str>, u16)> = writes
        .iter()
        .map(|r| (r.subresource.as_deref(), r.field_manager.as_deref(), r.code))
        .collect();
    assert_eq!(
        seen,
        [
            (Some("status"), Some("kubectl-patch"), 200),
            (None, Some("kubectl-client-side-apply"), 422)
        ],
        "the status patch and the refused apply of the typo"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_get_watch_follows_changes() {
    let sim = start_project().await;
    let k = Kubectl::new(&sim);
    k.ok(&["apply", "-f", &format!("{}claims.yaml", examples())])
        .await;
    let mut child = k
        .command(&["get", "nicipclaims", "-w", "--no-headers"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut seen = Vec::new();
    let mut patched = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen
        .iter()
        .any(|l: &String| l.starts_with("batch-workers") && l.contains("Stalled"))
    {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("watch output in time")
            .expect("read");
        let Some(line) = line else {
            panic!("kubectl get -w ended: {seen:?}")
        };
        seen.push(line);
        if !patched && seen.len() >= 3 {
            patched = true;
            let api: Api<nicip::api::v1alpha1::NicIpClaim> =
                Api::namespaced(sim.client().expect("client"), "default");
            let status = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Stalled", "message": "x",
                "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]}});
            api.patch_status(
                "batch-workers",
                &PatchParams::default(),
                &Patch::Merge(status),
            )
            .await
            .expect("patch status");
        }
    }
    assert!(seen.len() >= 4, "{seen:?}");
    child.kill().await.expect("kill kubectl");
}

#[tokio::test]
async fn project_crds_validate_and_take_controller_status() {
    use nicip::api::v1alpha1::NicIpClaim;
    let sim = start_project().await;
    let api: Api<NicIpClaim> = Api::namespaced(sim.client().expect("client"), "default");
    let claim = |name: &str, ipv4: Value| {
        serde_json::from_value::<NicIpClaim>(
            json!({"apiVersion": "nicip.io/v1alpha1", "kind": "NicIpClaim",
            "metadata": {"name": name}, "spec": {"nicId": "nic-1", "ipv4": ipv4}}),
        )
        .expect("claim")
    };
    let err = api_error(
        api.create(
            &PostParams::default(),
            &claim("both", json!({"count": 2, "addresses": ["10.0.0.5"]})),
        )
        .await
        .expect_err("CEL"),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert!(
        err.message
            .contains("set exactly one of ipv4.addresses and ipv4.count"),
        "{}",
        err.message
    );
    let err = api_error(
        api.create(&PostParams::default(), &claim("many", json!({"count": 51})))
            .await
            .expect_err("range"),
    );
    assert!(err.message.contains("spec.ipv4.count"), "{}", err.message);

    let created = api
        .create(&PostParams::default(), &claim("ok", json!({"count": 2})))
        .await
        .expect("valid claim");
    assert_eq!(created.metadata.generation, Some(1));
    let err = api_error(
        merge(&api, "ok", json!({"spec": {"nicId": "nic-2"}}))
            .await
            .expect_err("immutable"),
    );
    assert!(
        err.message.contains("nicId is immutable"),
        "{}",
        err.message
    );

    let status = json!({"apiVersion": "nicip.io/v1alpha1", "kind": "NicIpClaim", "status": {"observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Converged", "message": "ok",
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]}});
    // A rule with a fieldPath reports that field.
    let configs: Api<nicip::api::v1alpha1::ProviderConfig> =
        Api::all(sim.client().expect("client"));
    let pc = serde_json::from_value(json!({"apiVersion": "nicip.io/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": "t"},
        "spec": {"provider": "Tencent", "credentialsSecretRef": {"name": "c"}}}))
    .expect("provider config");
    let err = api_error(
        configs
            .create(&PostParams::default(), &pc)
            .await
            .expect_err("region required"),
    );
    assert!(
        err.message.contains("spec.region: Invalid value"),
        "{}",
        err.message
    );
    assert!(
        err.message
            .contains("region is required for the Tencent providers"),
        "{}",
        err.message
    );

    let controller = PatchParams::apply("nicip-controller").force();
    let written = api
        .patch_status("ok", &controller, &Patch::Apply(&status))
        .await
        .expect("status");
    assert_eq!(written.metadata.generation, Some(1));
    let again = api
        .patch_status("ok", &controller, &Patch::Apply(&status))
        .await
        .expect("status again");
    assert_eq!(
        again.resource_version(),
        written.resource_version(),
        "an unchanged status apply writes nothing"
    );
}

#[tokio::test]
async fn watcher_streaming_list_ends_initial_events_with_a_bookmark() {
    let sim = start().await;
    let api: Api<Widget> = Api::namespaced(sim.client().expect("client"), "default");
    for name in ["x", "y"] {
        api.create(&PostParams::default(), &widget(name, 1))
            .await
            .expect("create");
    }
    let mut events = watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut initial = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next()).await {
            Ok(Ok(Some(watcher::Event::Init))) => {}
            Ok(Ok(Some(watcher::Event::InitApply(w)))) => initial.push(w.name_any()),
            Ok(Ok(Some(watcher::Event::InitDone))) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(initial, ["x", "y"]);
    let watch = sim
        .requests()
        .into_iter()
        .find(|r| r.verb == "watch")
        .expect("a watch");
    assert_eq!(watch.code, 200);
    assert!(
        sim.requests().iter().all(|r| r.verb != "list"),
        "a streaming list needs no list call"
    );
}

/// A raw request, for what kube-rs would not send: (code, Status or object).
async fn raw(
    sim: &RunningKubeSim,
    method: reqwest::Method,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .request(method, format!("{}{path}", sim.url()))
        .header("Content-Type", content_type)
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let code = resp.status().as_u16();
    (code, resp.json().await.expect("json body"))
}

#[tokio::test]
async fn unsupported_requests_are_refused_with_kube_apiserver_errors() {
    use reqwest::Method;
    let sim = start().await;
    let api: Api<Widget> = Api::namespaced(sim.client().expect("client"), "default");
    api.create(&PostParams::default(), &widget("u", 3))
        .await
        .expect("create");
    let item = "/apis/test.nicip.io/v1/namespaces/default/widgets/u";
    let merge_type = "application/merge-patch+json";
    let cases: [(Method, String, &str, &str, u16, &str, &str); 14] = [
        (
            Method::DELETE,
            "/api/v1/namespaces/default".into(),
            "application/json",
            "",
            405,
            "MethodNotAllowed",
            "kubesim does not delete namespaces (it would have to delete their contents)",
        ),
        (
            Method::GET,
            "/apis/test.nicip.io/v1/namespaces/default/widgets?limit=ten".into(),
            "application/json",
            "",
            400,
            "BadRequest",
            r#"invalid value for query parameter limit: "ten""#,
        ),
        (
            Method::POST,
            "/api/v1/namespaces/default/secrets".into(),
            "application/vnd.kubernetes.protobuf",
            "k8s\u{0}",
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (kubesim does not decode application/vnd.kubernetes.protobuf)",
        ),
        (
            Method::GET,
            "/apis/test.nicip.io/v1/namespaces/default/widgets?sendInitialEvents=true".into(),
            "application/json",
            "",
            422,
            "Invalid",
            r#"ListOptions.meta.k8s.io "" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list"#,
        ),
        (
            Method::GET,
            "/apis/test.nicip.io/v1/namespaces/default/widgets?resourceVersion=1&resourceVersionMatch=Newest".into(),
            "application/json",
            "",
            422,
            "Invalid",
            r#"ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Unsupported value: "Newest": supported values: "Exact", "NotOlderThan", """#,
        ),
        (
            Method::POST,
            "/apis/test.nicip.io/v1/namespaces/default/widgets?dryRun=Yes".into(),
            "application/json",
            r#"{"metadata":{"name":"v"},"spec":{"size":1,"color":"c"}}"#,
            422,
            "Invalid",
            r#"CreateOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: []string{"Yes"}: supported values: "All""#,
        ),
        (
            Method::PATCH,
            format!("{item}?fieldValidation=Loose"),
            merge_type,
            "{}",
            422,
            "Invalid",
            r#"PatchOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "Loose": supported values: "", "Ignore", "Strict", "Warn""#,
        ),
        (
            Method::PATCH,
            format!("{item}?force=true"),
            merge_type,
            r#"{"spec":{"size":4}}"#,
            422,
            "Invalid",
            r#"PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for non-apply patch"#,
        ),
        (
            Method::PATCH,
            item.into(),
            "application/apply-patch+yaml",
            "spec:\n  size: 4\n",
            422,
            "Invalid",
            r#"PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch"#,
        ),
        (
            Method::PATCH,
            item.into(),
            "application/strategic-merge-patch+json",
            "{}",
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ),
        (
            Method::PATCH,
            item.into(),
            "application/json-patch+json",
            r#"[{"op":"test","path":"/spec/size","value":99},{"op":"replace","path":"/spec/size","value":4}]"#,
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
        ),
        (
            Method::GET,
            format!("{item}/scale"),
            "application/json",
            "",
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
        (
            Method::DELETE,
            format!("{item}?propagationPolicy=Foreground"),
            "application/json",
            "",
            400,
            "BadRequest",
            "propagationPolicy Foreground needs the garbage collector, which kubesim does not have; use Background",
        ),
        (
            Method::POST,
            item.to_string(),
            "application/json",
            "{}",
            405,
            "MethodNotAllowed",
            "POST /apis/test.nicip.io/v1/namespaces/default/widgets/u is not supported by kubesim (no POST to a named object)",
        ),
    ];
    for (method, path, content_type, body, code, reason, message) in cases {
        let (got, status) = raw(&sim, method.clone(), &path, content_type, body).await;
        assert_eq!(
            (got, status["reason"].as_str(), status["message"].as_str()),
            (code, Some(reason), Some(message)),
            "{method} {path}: {status}"
        );
    }
    let (_, status) = raw(
        &sim,
        Method::POST,
        "/apis/test.nicip.io/v1/namespaces/default/widgets?dryRun=Yes",
        "application/json",
        "{}",
    )
    .await;
    assert_eq!(
        status["details"],
        json!({"group": "meta.k8s.io", "kind": "CreateOptions", "causes": [{"reason": "FieldValueNotSupported",
            "field": "dryRun", "message": r#"Unsupported value: []string{"Yes"}: supported values: "All""#}]})
    );
    // YAML bodies are decoded, as kube-apiserver decodes them.
    let (code, created) = raw(
        &sim,
        Method::POST,
        "/api/v1/namespaces/default/secrets",
        "application/yaml",
        "metadata:\n  name: from-yaml\nstringData:\n  a: b\n",
    )
    .await;
    assert_eq!((code, &created["data"]), (201, &json!({"a": "Yg=="})));
    // Orphaning in the body is refused too, and nothing above changed the object.
    let err = api_error(
        api.delete(
            "u",
            &DeleteParams {
                propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
                ..Default::default()
            },
        )
        .await
        .expect_err("orphan"),
    );
    assert_eq!(err.code, 400);
    let unchanged = api.get("u").await.expect("still there");
    assert_eq!(unchanged.spec.size, 3);

    // Delete preconditions, refused as kube-apiserver's BeforeDelete words it.
    let err = api_error(
        api.delete(
            "u",
            &DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: Some("not-the-uid".into()),
                    resource_version: None,
                }),
                ..Default::default()
            },
        )
        .await
        .expect_err("wrong uid"),
    );
    assert_eq!(
        (err.code, err.reason.as_str(), err.message),
        (
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on widgets.test.nicip.io \"u\": the UID in the precondition (not-the-uid) does not match the UID in record ({}). The object might have been deleted and then recreated",
                unchanged.uid().expect("uid")
            )
        )
    );
    // A dry-run delete (kube-rs sends it in the body) deletes nothing.
    api.delete("u", &DeleteParams::default().dry_run())
        .await
        .expect("dry-run delete");
    api.get("u").await.expect("not deleted by a dry run");
}

#[tokio::test]
async fn request_log_records_every_field() {
    use nicip::kubesim::RequestRecord;
    let sim = start().await;
    let client = sim.client().expect("client");
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    api.create(
        &PostParams {
            field_manager: Some("creator".into()),
            ..Default::default()
        },
        &widget("g", 1),
    )
    .await
    .expect("create");
    apply_status(
        &api,
        "g",
        json!({"apiVersion": "test.nicip.io/v1", "kind": "Widget", "status": {"observed": 1}}),
    )
    .await
    .expect("status apply");
    let _ = api.get("missing").await.expect_err("404");
    let leases: Api<Lease> = Api::namespaced(client, "kube-system");
    leases.list(&ListParams::default()).await.expect("list");
    let (code, _) = raw(
        &sim,
        reqwest::Method::GET,
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases?limit=ten",
        "application/json",
        "",
    )
    .await;
    assert_eq!(code, 400);
    api.delete("g", &DeleteParams::default())
        .await
        .expect("delete");
    let record = |verb: &str,
                  group: &str,
                  resource: &str,
                  sub: Option<&str>,
                  ns: &str,
                  name: Option<&str>,
                  manager: Option<&str>,
                  code: u16| RequestRecord {
        verb: verb.into(),
        group: group.into(),
        resource: resource.into(),
        subresource: sub.map(str::to_string),
        namespace: Some(ns.into()),
        name: name.map(str::to_string),
        field_manager: manager.map(str::to_string),
        code,
    };
    assert_eq!(
        sim.requests(),
        [
            record(
                "create",
                "test.nicip.io",
                "widgets",
                None,
                "default",
                None,
                Some("creator"),
                201
            ),
            record(
                "patch",
                "test.nicip.io",
                "widgets",
                Some("status"),
                "default",
                Some("g"),
                Some("controller"),
                200
            ),
            record(
                "get",
                "test.nicip.io",
                "widgets",
                None,
                "default",
                Some("missing"),
                None,
                404
            ),
            record(
                "list",
                "coordination.k8s.io",
                "leases",
                None,
                "kube-system",
                None,
                None,
                200
            ),
            record(
                "list",
                "coordination.k8s.io",
                "leases",
                None,
                "kube-system",
                None,
                None,
                400
            ),
            record(
                "delete",
                "test.nicip.io",
                "widgets",
                None,
                "default",
                Some("g"),
                None,
                200
            ),
        ]
    );
}

#[tokio::test]
async fn representations_follow_the_accept_header() {
    let sim = start().await;
    let api: Api<Widget> = Api::namespaced(sim.client().expect("client"), "default");
    api.create(&PostParams::default(), &widget("m", 2))
        .await
        .expect("create");
    // kube-rs's metadata calls ask for PartialObjectMetadata(List).
    let one = api.get_metadata("m").await.expect("get metadata");
    assert_eq!(
        (one.types.as_ref().map(|t| t.kind.as_str()), one.name_any()),
        (Some("PartialObjectMetadata"), "m".to_string())
    );
    let list = api
        .list_metadata(&ListParams::default())
        .await
        .expect("list metadata");
    assert_eq!(
        list.types.kind, "PartialObjectMetadataList",
        "{:?}",
        list.types
    );
    let raw_get = |accept: &'static str, query: &'static str| {
        let url = format!(
            "{}/apis/test.nicip.io/v1/namespaces/default/widgets/m{query}",
            sim.url()
        );
        async move {
            let resp = reqwest::Client::new()
                .get(url)
                .header("Accept", accept)
                .send()
                .await
                .expect("request");
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.expect("json"),
            )
        }
    };
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io";
    let (_, t) = raw_get(table, "").await;
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    let (_, t) = raw_get(table, "?includeObject=Object").await;
    assert_eq!(t["rows"][0]["object"]["spec"]["size"], 2);
    let (_, t) = raw_get(table, "?includeObject=None").await;
    assert!(t["rows"][0].get("object").is_none(), "{t}");
    let (code, t) = raw_get(table, "?includeObject=Some").await;
    assert_eq!((code, t["reason"].as_str()), (400, Some("BadRequest")));
    // A fallback is honoured; a representation kubesim lacks is a 406, not JSON in disguise.
    let (code, t) = raw_get("application/vnd.kubernetes.protobuf, application/json", "").await;
    assert_eq!((code, t["kind"].as_str()), (200, Some("Widget")));
    let (code, t) = raw_get("application/cbor", "").await;
    assert_eq!((code, t["reason"].as_str()), (406, Some("NotAcceptable")));

    // YAML is served, for objects, lists and errors, as kube-apiserver serves it.
    let client = sim.client().expect("client");
    let yaml = |path: &'static str| {
        let client = client.clone();
        async move {
            let text = client
                .request_text(
                    axum::http::Request::get(path)
                        .header("Accept", "application/yaml")
                        .body(Vec::new())
                        .expect("request"),
                )
                .await;
            text.map(|t| serde_saphyr::from_str::<Value>(&t).expect("YAML"))
        }
    };
    let obj = yaml("/apis/test.nicip.io/v1/namespaces/default/widgets/m")
        .await
        .expect("get as YAML");
    assert_eq!(
        (&obj["kind"], &obj["spec"]["size"]),
        (&json!("Widget"), &json!(2))
    );
    let list = yaml("/apis/test.nicip.io/v1/namespaces/default/widgets")
        .await
        .expect("list as YAML");
    assert_eq!(list["items"][0]["metadata"]["name"], "m");
    let err = api_error(
        yaml("/apis/test.nicip.io/v1/namespaces/default/widgets/none")
            .await
            .expect_err("404"),
    );
    assert_eq!(err.code, 404);
}

/// Drive a kube-rs `watcher` in the background, reporting its events as text
/// (`init`, `init-apply a`, `init-done`, `apply a`, `delete a`).
fn watch_events(
    api: Api<Widget>,
    cfg: watcher::Config,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<String>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut events = watcher(api, cfg).boxed();
        while let Some(ev) = events.next().await {
            let text = match ev {
                Ok(watcher::Event::Init) => "init".to_string(),
                Ok(watcher::Event::InitApply(w)) => format!("init-apply {}", w.name_any()),
                Ok(watcher::Event::InitDone) => "init-done".to_string(),
                Ok(watcher::Event::Apply(w)) => format!("apply {}", w.name_any()),
                Ok(watcher::Event::Delete(w)) => format!("delete {}", w.name_any()),
                Err(e) => format!("error {e}"),
            };
            if tx.send(text).is_err() {
                return;
            }
        }
    });
    (rx, task)
}

/// Wait (at most 10 s) for the watcher to report `want`, returning what came before it.
async fn expect_event(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    want: &str,
) -> Vec<String> {
    let mut before = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) if e == want => return before,
            Ok(Some(e)) => before.push(e),
            other => panic!("waiting for {want:?} after {before:?}: {other:?}"),
        }
    }
}

/// Poll the request log until `count` watches of `namespace` have been served.
async fn wait_for_watches(sim: &RunningKubeSim, namespace: Option<&str>, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let served = sim
            .requests()
            .iter()
            .filter(|r| r.verb == "watch" && r.namespace.as_deref() == namespace)
            .count();
        if served >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {served} watches of {namespace:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn watcher_resumes_from_bookmarks_and_relists_after_gone() {
    // Bookmarks every 100 ms; each watch asks to end after a second, so the
    // watchers reconnect on their own.
    let sim = start_bookmarking_every_100ms().await;
    let client = sim.client().expect("client");
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &widget("a", 1))
        .await
        .expect("create");
    let cfg = watcher::Config::default().timeout(1);
    let (mut with_bookmarks, t1) = watch_events(api.clone(), cfg.clone());
    let (mut without, t2) = watch_events(Api::all(client.clone()), cfg.disable_bookmarks());
    for rx in [&mut with_bookmarks, &mut without] {
        assert_eq!(
            expect_event(rx, "init-done").await,
            ["init", "init-apply a"]
        );
    }

    // Writes elsewhere move the cluster's resourceVersion on; only bookmarks
    // tell a watcher of widgets about it. Then the history is compacted.
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "elsewhere"}})).expect("secret"),
        )
        .await
        .expect("secret");
    wait_for_watches(&sim, Some("default"), 2).await;
    wait_for_watches(&sim, None, 2).await;
    sim.compact();
    wait_for_watches(&sim, Some("default"), 3).await;
    wait_for_watches(&sim, None, 3).await;
    api.create(&PostParams::default(), &widget("b", 1))
        .await
        .expect("create");

    // The bookmarked watcher resumed past the compaction without a relist...
    assert_eq!(
        expect_event(&mut with_bookmarks, "apply b").await,
        Vec::<String>::new()
    );
    // ...the other one resumed from its last object, got 410 Gone and relisted.
    let relisted = expect_event(&mut without, "init-done").await;
    assert!(
        relisted[0].contains("too old resource version") && relisted[0].ends_with("Expired"),
        "{relisted:?}"
    );
    // b may be created before or after the relist.
    assert_eq!(relisted[1..3], ["init", "init-apply a"], "{relisted:?}");
    let lists = |namespace: Option<&str>| {
        sim.requests()
            .iter()
            .filter(|r| r.verb == "list" && r.namespace.as_deref() == namespace)
            .count()
    };
    assert_eq!((lists(Some("default")), lists(None)), (1, 2));
    t1.abort();
    t2.abort();
}

/// A condition as the controller writes it.
fn condition(type_: &str, status: &str, reason: &str, generation: Option<i64>) -> Value {
    let mut c = json!({"type": type_, "status": status, "reason": reason, "message": "m",
        "lastTransitionTime": "2026-01-01T00:00:00Z"});
    if let Some(g) = generation {
        c["observedGeneration"] = json!(g);
    }
    c
}

fn claim_status(status: Value) -> Value {
    json!({"apiVersion": "nicip.io/v1alpha1", "kind": "NicIpClaim", "status": status})
}

/// The `fieldsV1` of one manager's entry.
fn fields_of(obj: &impl Resource, manager: &str, operation: &str) -> Value {
    let entry = obj
        .meta()
        .managed_fields
        .iter()
        .flatten()
        .find(|m| {
            m.manager.as_deref() == Some(manager) && m.operation.as_deref() == Some(operation)
        })
        .unwrap_or_else(|| panic!("no {operation} entry for {manager}"));
    serde_json::to_value(entry.fields_v1.as_ref().expect("fieldsV1")).expect("json")
}

#[tokio::test]
async fn status_apply_removes_what_the_controller_stops_applying() {
    use nicip::api::v1alpha1::NicIpClaim;
    let sim = start_project().await;
    let api: Api<NicIpClaim> = Api::namespaced(sim.client().expect("client"), "default");
    let claim: NicIpClaim = serde_json::from_value(
        json!({"apiVersion": "nicip.io/v1alpha1", "kind": "NicIpClaim",
        "metadata": {"name": "c"}, "spec": {"nicId": "nic-1", "ipv4": {"count": 1}}}),
    )
    .expect("claim");
    api.create(&PostParams::default(), &claim)
        .await
        .expect("create");
    let controller = PatchParams::apply("nicip-controller").force();
    let conditions = |o: &NicIpClaim| -> Value {
        serde_json::to_value(&o.status.as_ref().expect("status").conditions).expect("json")
    };
    let first = claim_status(json!({"observedGeneration": 1,
        "lastError": {"action": "AssignIpv4", "code": "X", "message": "m", "retryable": true, "time": "2026-01-01T00:00:00Z"},
        "conditions": [condition("Ready", "False", "CloudError", Some(1)), condition("Reconciling", "True", "Assigning", Some(1)),
            condition("Stalled", "False", "Progressing", Some(1))]}));
    let written = api
        .patch_status("c", &controller, &Patch::Apply(&first))
        .await
        .expect("first status");
    assert_eq!(
        fields_of(&written, "nicip-controller", "Apply")["f:status"]["f:conditions"][r#"k:{"type":"Ready"}"#],
        json!({".": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:observedGeneration": {},
            "f:reason": {}, "f:status": {}, "f:type": {}}),
        "list-map items are owned themselves"
    );

    // Reconciling goes, Stalled and Ready swap places, Ready drops its observedGeneration,
    // lastError goes: kube-apiserver removes all of it.
    let second = claim_status(json!({"observedGeneration": 1,
        "conditions": [condition("Stalled", "True", "Conflict", Some(1)), condition("Ready", "False", "CloudError", None)]}));
    let written = api
        .patch_status("c", &controller, &Patch::Apply(&second))
        .await
        .expect("status without Reconciling");
    assert_eq!(conditions(&written), second["status"]["conditions"]);
    assert_eq!(
        written.status.as_ref().and_then(|s| s.last_error.as_ref()),
        None
    );
    assert_eq!(
        serde_json::to_value(&written.status).expect("json"),
        serde_json::to_value(&api.get_status("c").await.expect("get").status).expect("json"),
        "the answer is what is stored"
    );

    // Back to three conditions, in a new order.
    let third = claim_status(json!({"observedGeneration": 2,
        "conditions": [condition("Reconciling", "True", "Assigning", Some(1)), condition("Ready", "True", "Converged", Some(1)),
            condition("Stalled", "False", "Progressing", Some(1))]}));
    let written = api
        .patch_status("c", &controller, &Patch::Apply(&third))
        .await
        .expect("three again");
    assert_eq!(conditions(&written), third["status"]["conditions"]);

    // A configuration without status removes everything the controller owned.
    let empty = api
        .patch_status(
            "c",
            &controller,
            &Patch::Apply(json!({"apiVersion": "nicip.io/v1alpha1", "kind": "NicIpClaim"})),
        )
        .await
        .expect("no status");
    let left = empty.status.clone().unwrap_or_default();
    assert!(
        left.conditions.is_empty() && left.observed_generation.is_none(),
        "{left:?}"
    );
    assert!(
        empty
            .managed_fields()
            .iter()
            .all(|m| m.manager.as_deref() != Some("nicip-controller")),
        "a manager owning nothing has no entry"
    );
}

#[tokio::test]
async fn updates_own_the_maps_and_lists_they_create() {
    let sim = start().await;
    let api: Api<Widget> = Api::namespaced(sim.client().expect("client"), "default");
    let created = api
        .create(
            &PostParams {
                field_manager: Some("maker".into()),
                ..Default::default()
            },
            &widget("u", 1),
        )
        .await
        .expect("create");
    assert_eq!(
        fields_of(&created, "maker", "Update"),
        json!({"f:spec": {".": {}, "f:color": {}, "f:mode": {}, "f:size": {}}})
    );
    // kube-runtime's finalizer helper adds its finalizer with a JSON patch.
    let patched = api
        .patch(
            "u",
            &PatchParams {
                field_manager: Some("finalizer".into()),
                ..Default::default()
            },
            &Patch::<()>::Json(
                serde_json::from_value(
                    json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                    {"op": "add", "path": "/metadata/finalizers", "value": ["nicip.io/release"]}]),
                )
                .expect("patch"),
            ),
        )
        .await
        .expect("finalizer");
    assert_eq!(
        fields_of(&patched, "finalizer", "Update"),
        json!({"f:metadata": {"f:finalizers": {".": {}, r#"v:"nicip.io/release""#: {}}}})
    );
    let labelled = api
        .patch(
            "u",
            &PatchParams {
                field_manager: Some("labeller".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .expect("label");
    assert_eq!(
        fields_of(&labelled, "labeller", "Update"),
        json!({"f:metadata": {"f:labels": {".": {}, "f:a": {}}}})
    );
}

/// The project's NicIpClaims as untyped objects, to send what typed clients never would.
fn dynamic_claims(sim: &RunningKubeSim) -> Api<kube::api::DynamicObject> {
    use nicip::api::v1alpha1::NicIpClaim;
    Api::namespaced_with(
        sim.client().expect("client"),
        "default",
        &kube::api::ApiResource::erase::<NicIpClaim>(&()),
    )
}

fn dynamic(v: Value) -> kube::api::DynamicObject {
    serde_json::from_value(v).expect("object")
}

#[tokio::test]
async fn nulls_in_non_nullable_fields_are_dropped_before_validation() {
    let sim = start_project().await;
    let api = dynamic_claims(&sim);
    let created = api
        .create(&PostParams::default(), &dynamic(json!({"apiVersion": "nicip.io/v1alpha1", "kind": "NicIpClaim",
            "metadata": {"name": "n"}, "spec": {"nicId": "nic-1", "ipv4": {"count": 1, "qosLevel": null},
            "vpcId": null, "attachment": null}, "status": null})))
        .await
        .expect("nulls are dropped on create");
    assert_eq!(
        created.data["spec"],
        json!({"nicId": "nic-1", "ipv4": {"count": 1}, "deletionPolicy": "Release", "managementPolicy": "Full",
            "providerConfigRef": {"name": "default"}})
    );
    let mut replaced = created.clone();
    replaced.data["spec"]["vpcId"] = Value::Null;
    replaced.data["spec"]["ipv4"]["count"] = json!(2);
    let replaced = api
        .replace("n", &PostParams::default(), &replaced)
        .await
        .expect("nulls are dropped on PUT");
    assert_eq!(replaced.data["spec"]["ipv4"], json!({"count": 2}));
    let mut status = replaced.clone();
    status.data["status"] = json!({"observedGeneration": 2, "lastError": null, "conditions": null});
    let status = api
        .replace_status("n", &PostParams::default(), &status)
        .await
        .expect("nulls are dropped on status PUT");
    assert_eq!(status.data["status"], json!({"observedGeneration": 2}));

    let err = api_error(
        api.create(
            &PostParams::default(),
            &dynamic(
                json!({"apiVersion": "nicip.io/v1alpha1", "kind": "NicIpClaim",
            "metadata": {"name": "m"}, "spec": null}),
            ),
        )
        .await
        .expect_err("spec is required"),
    );
    let causes: Vec<(String, String)> = err
        .details
        .expect("details")
        .causes
        .iter()
        .map(|c| (c.reason.clone(), c.field.clone()))
        .collect();
    assert_eq!(
        causes[0],
        ("FieldValueRequired".to_string(), "spec".to_string())
    );
}

#[tokio::test]
async fn delete_answers_a_status_unless_finalizers_keep_the_object() {
    use kube::api::{Preconditions, PropagationPolicy};
    use nicip::api::v1alpha1::ProviderConfig;
    let sim = start().await;
    let api: Api<Widget> = Api::namespaced(sim.client().expect("client"), "default");
    let expect_status = |status: Status, name: &str, uid: &str| {
        assert_eq!(
            status.status,
            Some(kube::core::response::StatusSummary::Success)
        );
        let details = status.details.expect("details");
        assert_eq!(
            (
                details.name.as_str(),
                details.group.as_str(),
                details.kind.as_str(),
                details.uid.as_str()
            ),
            (name, "test.nicip.io", "widgets", uid)
        );
    };
    for (name, params) in [
        ("plain", DeleteParams::default()),
        ("background", DeleteParams::background()),
        ("dry", DeleteParams::default().dry_run()),
    ] {
        let w = api
            .create(&PostParams::default(), &widget(name, 1))
            .await
            .expect("create");
        let uid = w.uid().expect("uid");
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: w.resource_version(),
            }),
            propagation_policy: params
                .propagation_policy
                .or(Some(PropagationPolicy::Background)),
            ..params
        };
        let answer = api.delete(name, &params).await.expect("delete");
        expect_status(
            answer.right().expect("a Status, not the object"),
            name,
            &uid,
        );
    }
    api.get("dry").await.expect("a dry run deletes nothing");

    let mut kept = widget("kept", 1);
    kept.metadata.finalizers = Some(vec!["test.nicip.io/hold".into()]);
    api.create(&PostParams::default(), &kept)
        .await
        .expect("create");
    let marked = api
        .delete("kept", &DeleteParams::default())
        .await
        .expect("delete")
        .left()
        .expect("the object, marked");
    assert!(marked.metadata.deletion_timestamp.is_some());

    let sim = start_project().await;
    let configs: Api<ProviderConfig> = Api::all(sim.client().expect("client"));
    let pc: ProviderConfig = serde_json::from_value(json!({"apiVersion": "nicip.io/v1alpha1", "kind": "ProviderConfig",
        "metadata": {"name": "pc"}, "spec": {"provider": "Zenlayer", "credentialsSecretRef": {"name": "c"}}}))
    .expect("provider config");
    let pc = configs
        .create(&PostParams::default(), &pc)
        .await
        .expect("create");
    let status = configs
        .delete("pc", &DeleteParams::default())
        .await
        .expect("delete")
        .right()
        .expect("a Status for a cluster-scoped kind");
    let details = status.details.expect("details");
    assert_eq!(
        (details.name.as_str(), details.kind.as_str(), details.uid),
        ("pc", "providerconfigs", pc.uid().expect("uid"))
    );
}

/// The causes of an `Invalid` Status as `field: message` lines.
fn causes(err: &Status) -> Vec<String> {
    err.details
        .as_ref()
        .map(|d| {
            d.causes
                .iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn built_in_kinds_are_validated_as_kube_apiserver_validates_them() {
    use k8s_openapi::api::events::v1::Event as NewEvent;
    let sim = start().await;
    let client = sim.client().expect("client");

    // events.k8s.io/v1 as a controller writes it, and what a cluster refuses.
    let events: Api<NewEvent> = Api::namespaced(client.clone(), "default");
    let good = json!({"metadata": {"name": "e1"}, "eventTime": "2026-01-01T00:00:00.000000Z", "type": "Normal",
        "reason": "Assigned", "action": "Assign", "note": "n", "reportingController": "nicip.io/controller",
        "reportingInstance": "nicip-0", "regarding": {"kind": "Widget", "name": "w", "namespace": "default"}});
    let created = events
        .create(
            &PostParams::default(),
            &serde_json::from_value(good.clone()).expect("event"),
        )
        .await
        .expect("a complete event");
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let seen = core.get("e1").await.expect("through core v1");
    assert_eq!(
        seen.source.and_then(|s| s.component),
        None,
        "kube-apiserver's conversion leaves source empty"
    );
    assert_eq!(
        seen.reporting_component.as_deref(),
        Some("nicip.io/controller")
    );
    let mut bad = good.clone();
    bad["metadata"]["name"] = json!("e2");
    bad["type"] = json!("Info");
    for field in [
        "eventTime",
        "reason",
        "action",
        "reportingController",
        "reportingInstance",
    ] {
        bad.as_object_mut().expect("object").remove(field);
    }
    let err = api_error(
        events
            .create(
                &PostParams::default(),
                &serde_json::from_value(bad).expect("event"),
            )
            .await
            .expect_err("incomplete event"),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert!(
        err.message
            .starts_with(r#"Event.events.k8s.io "e2" is invalid: "#),
        "{}",
        err.message
    );
    assert_eq!(
        causes(&err),
        [
            "eventTime: Required value",
            "type: Invalid value: \"\": has invalid value: Info",
        ]
        .map(String::from),
        "without an eventTime an Event is checked as an old-style one"
    );
    let mut bad = good.clone();
    bad["metadata"]["name"] = json!("e3");
    bad.as_object_mut()
        .expect("object")
        .remove("reportingInstance");
    bad.as_object_mut().expect("object").remove("action");
    let err = api_error(
        events
            .create(
                &PostParams::default(),
                &serde_json::from_value(bad).expect("event"),
            )
            .await
            .expect_err("no instance, no action"),
    );
    assert_eq!(
        causes(&err),
        [
            "reportingInstance: Required value",
            "action: Required value"
        ]
        .map(String::from)
    );
    // An eventTime is a MicroTime: six fractional digits, else the body does not decode.
    let (code, status) = raw_post(&sim, "/apis/events.k8s.io/v1/namespaces/default/events", &{
        let mut e = good.clone();
        e["metadata"]["name"] = json!("e4");
        e["eventTime"] = json!("2026-01-01T00:00:00Z");
        e
    })
    .await;
    assert_eq!(
        (code, status["message"].as_str().unwrap_or_default()),
        (
            400,
            r#"Event in version "v1" cannot be handled as a Event: parsing time "2026-01-01T00:00:00Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse "Z" as ".000000""#
        )
    );
    // Once written, what the event says cannot change.
    let err = api_error(
        merge(&events, "e1", json!({"reason": "Released"}))
            .await
            .expect_err("immutable"),
    );
    assert_eq!(
        causes(&err),
        [r#"reason: Invalid value: "Released": field is immutable"#].map(String::from)
    );
    assert_eq!(created.reason.as_deref(), Some("Assigned"));

    // Leases: a positive duration, MicroTimes.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let lease = |name: &str, spec: Value| -> Lease {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("lease")
    };
    let err = api_error(
        leases
            .create(
                &PostParams::default(),
                &lease(
                    "zero",
                    json!({"holderIdentity": "a", "leaseDurationSeconds": 0}),
                ),
            )
            .await
            .expect_err("zero duration"),
    );
    assert_status(
        &err,
        422,
        "Invalid",
        r#"Lease.coordination.k8s.io "zero" is invalid: spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"#,
    );
    leases
        .create(
            &PostParams::default(),
            &lease("ok", json!({"holderIdentity": "a", "leaseDurationSeconds": 15,
                "acquireTime": "2026-01-01T00:00:00.000000Z", "renewTime": "2026-01-01T00:00:01.123456Z"})),
        )
        .await
        .expect("MicroTimes");
    let (code, status) = raw_post(
        &sim,
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases",
        &json!({"metadata": {"name": "seconds"}, "spec": {"renewTime": "2026-01-01T00:00:01.5Z"}}),
    )
    .await;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(r#"Lease in version "v1" cannot be handled as a Lease: parsing time "2026-01-01T00:00:01.5Z""#)),
        "{status}"
    );

    // Secrets: data keys, TLS keys, immutable type and immutable Secrets.
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    let secret = |v: Value| -> Secret { serde_json::from_value(v).expect("secret") };
    let err = api_error(
        secrets
            .create(
                &PostParams::default(),
                &secret(
                    json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
                    "stringData": {"bad key": "x", "tls.crt": "c"}}),
                ),
            )
            .await
            .expect_err("invalid secret"),
    );
    assert_eq!(
        err.message,
        r#"Secret "tls" is invalid: [data[bad key]: Invalid value: "bad key": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+'), data[tls.key]: Required value]"#
    );
    secrets
        .create(
            &PostParams::default(),
            &secret(json!({"metadata": {"name": "frozen"}, "immutable": true, "stringData": {"k": "v"}})),
        )
        .await
        .expect("immutable secret");
    let err = api_error(
        merge(
            &secrets,
            "frozen",
            json!({"type": "kubernetes.io/tls", "stringData": {"k": "w"}}),
        )
        .await
        .expect_err("frozen"),
    );
    assert_eq!(
        causes(&err),
        [
            r#"type: Invalid value: "kubernetes.io/tls": field is immutable"#,
            "data: Forbidden: field is immutable when `immutable` is set",
            "data[tls.crt]: Required value",
            "data[tls.key]: Required value",
        ]
        .map(String::from)
    );
    let err = api_error(
        merge(&secrets, "frozen", json!({"immutable": false}))
            .await
            .expect_err("stays immutable"),
    );
    assert_eq!(
        causes(&err),
        ["immutable: Forbidden: field is immutable when `immutable` is set"].map(String::from)
    );
}

/// The next event of a raw watch (at most 5 s away).
async fn next_event<S>(stream: &mut S) -> WatchEvent<Widget>
where
    S: futures::Stream<Item = Result<WatchEvent<Widget>, kube::Error>> + Unpin,
{
    match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        Ok(Some(Ok(ev))) => ev,
        other => panic!("no watch event: {other:?}"),
    }
}

#[tokio::test]
async fn watch_events_show_objects_as_kube_apiserver_does() {
    let sim = start().await;
    let api: Api<Widget> = Api::namespaced(sim.client().expect("client"), "default");
    let labelled = |name: &str| {
        let mut w = widget(name, 1);
        w.metadata.labels = Some([("sel".to_string(), "yes".to_string())].into());
        w.metadata.finalizers = Some(vec!["test.nicip.io/hold".into()]);
        w
    };
    for name in ["moved", "held"] {
        api.create(&PostParams::default(), &labelled(name))
            .await
            .expect("create");
    }
    let from = sim.resource_version().to_string();
    let mut stream = api
        .watch(&WatchParams::default().labels("sel=yes"), &from)
        .await
        .expect("watch")
        .boxed();

    // Leaving the selector: a DELETED event with the labels that matched.
    let moved = merge(
        &api,
        "moved",
        json!({"metadata": {"labels": {"sel": "no"}}}),
    )
    .await
    .expect("relabel");
    match next_event(&mut stream).await {
        WatchEvent::Deleted(w) => {
            assert_eq!(w.labels().get("sel").map(String::as_str), Some("yes"));
            assert_eq!(w.resource_version(), moved.resource_version());
        }
        other => panic!("expected DELETED, got {other:?}"),
    }

    // The last finalizer removed: the answer has no finalizers, the DELETED
    // event shows the object as it was stored last.
    api.delete("held", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(matches!(
        next_event(&mut stream).await,
        WatchEvent::Modified(_)
    ));
    let released = api
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::<()>::Json(
                serde_json::from_value(json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "test.nicip.io/hold"},
                    {"op": "remove", "path": "/metadata/finalizers/0"}]))
                .expect("patch"),
            ),
        )
        .await
        .expect("release");
    assert_eq!(released.metadata.finalizers, None, "no finalizers: []");
    match next_event(&mut stream).await {
        WatchEvent::Deleted(w) => {
            assert_eq!(
                w.metadata.finalizers,
                Some(vec!["test.nicip.io/hold".to_string()])
            );
            assert!(w.metadata.deletion_timestamp.is_some());
        }
        other => panic!("expected DELETED, got {other:?}"),
    }

    // The end of the initial events carries the list blueprint.
    let mut stream = api
        .watch(&WatchParams::streaming_lists(), "0")
        .await
        .expect("streaming list")
        .boxed();
    loop {
        match next_event(&mut stream).await {
            WatchEvent::Added(_) => {}
            WatchEvent::Bookmark(b) => {
                use base64::Engine;
                let annotations = b.metadata.annotations;
                assert_eq!(
                    annotations
                        .get("k8s.io/initial-events-end")
                        .map(String::as_str),
                    Some("true")
                );
                let blueprint = annotations
                    .get("kubernetes.io/initial-events-list-blueprint")
                    .expect("blueprint");
                let list: Value = serde_json::from_slice(
                    &base64::engine::general_purpose::STANDARD
                        .decode(blueprint)
                        .expect("base64"),
                )
                .expect("json");
                assert_eq!(
                    (&list["kind"], &list["apiVersion"]),
                    (&json!("WidgetList"), &json!("test.nicip.io/v1"))
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn lists_are_consistent_snapshots_while_history_lasts() {
    use kube::api::VersionMatch;
    let sim = start().await;
    let api: Api<Widget> = Api::namespaced(sim.client().expect("client"), "default");
    let names = |l: &kube::core::ObjectList<Widget>| -> Vec<String> {
        l.items.iter().map(|w| w.name_any()).collect()
    };
    for i in 0..4 {
        api.create(&PostParams::default(), &widget(&format!("w{i}"), 1))
            .await
            .expect("create");
    }
    let first = api
        .list(&ListParams::default().limit(2))
        .await
        .expect("page 1");
    assert_eq!(names(&first), ["w0", "w1"]);
    let at = first.metadata.resource_version.clone().expect("rv");
    // Changes after the first page do not show on the next ones.
    api.create(&PostParams::default(), &widget("w5", 1))
        .await
        .expect("create later");
    api.delete("w3", &DeleteParams::default())
        .await
        .expect("delete later");
    merge(&api, "w2", json!({"spec": {"size": 9}}))
        .await
        .expect("change later");
    let token = first.metadata.continue_.clone().expect("token");
    let second = api
        .list(&ListParams::default().limit(5).continue_token(&token))
        .await
        .expect("page 2");
    assert_eq!(names(&second), ["w2", "w3"], "the first page's snapshot");
    assert_eq!(second.items[0].spec.size, 1);
    assert_eq!(
        second.metadata.resource_version.as_deref(),
        Some(at.as_str())
    );

    // An exact older version that history still holds.
    let exact = api
        .list(&ListParams::default().at(&at).matching(VersionMatch::Exact))
        .await
        .expect("exact list");
    assert_eq!(names(&exact), ["w0", "w1", "w2", "w3"]);
    assert_eq!(
        exact.metadata.resource_version.as_deref(),
        Some(at.as_str())
    );
    let now = api.list(&ListParams::default()).await.expect("list");
    assert_eq!(names(&now), ["w0", "w1", "w2", "w5"]);

    // resourceVersion=0 is served from the cache, whole (kube-rs's ListParams
    // leaves the version out with a limit, so the request is spelled out).
    let cached: kube::core::ObjectList<Widget> = sim
        .client()
        .expect("client")
        .request(
            axum::http::Request::get(
                "/apis/test.nicip.io/v1/namespaces/default/widgets?limit=1&resourceVersion=0",
            )
            .body(Vec::new())
            .expect("request"),
        )
        .await
        .expect("cached list");
    assert_eq!(names(&cached), ["w0", "w1", "w2", "w5"]);
    assert_eq!(cached.metadata.continue_, None);

    sim.compact();
    let err = api_error(
        api.list(&ListParams::default().at(&at).matching(VersionMatch::Exact))
            .await
            .expect_err("compacted"),
    );
    assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));
    assert!(
        err.message
            .starts_with(&format!("too old resource version: {at} (")),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn deletecollection_and_crds_are_served_and_discovered() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
    let sim = start().await;
    let client = sim.client().expect("client");
    let discover = |path: &'static str| {
        let client = client.clone();
        async move {
            let list: APIResourceList = client
                .request(
                    axum::http::Request::get(path)
                        .body(Vec::new())
                        .expect("request"),
                )
                .await
                .expect("discovery");
            list.resources
                .into_iter()
                .map(|r| (r.name, r.verbs))
                .collect::<std::collections::BTreeMap<_, _>>()
        }
    };
    let widgets = discover("/apis/test.nicip.io/v1").await;
    assert!(widgets["widgets"].contains(&"deletecollection".to_string()));
    let core = discover("/api/v1").await;
    assert!(core["secrets"].contains(&"deletecollection".to_string()));
    assert!(!core["namespaces"].contains(&"deletecollection".to_string()));
    let crds = discover("/apis/apiextensions.k8s.io/v1").await;
    assert_eq!(crds["customresourcedefinitions"], ["get", "list", "watch"]);

    // The served CRDs, read-only.
    let defs: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = defs.get("widgets.test.nicip.io").await.expect("the CRD");
    assert_eq!(crd.spec.names.kind, "Widget");
    let established = crd
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established);
    let err = api_error(
        defs.delete("widgets.test.nicip.io", &DeleteParams::default())
            .await
            .expect_err("read-only"),
    );
    assert_eq!((err.code, err.reason.as_str()), (405, "MethodNotAllowed"));

    // deletecollection with label and field selectors.
    let api: Api<Widget> = Api::namespaced(client, "default");
    for (name, team, held) in [
        ("a", "x", false),
        ("b", "x", true),
        ("c", "y", false),
        ("d", "x", false),
    ] {
        let mut w = widget(name, 1);
        w.metadata.labels = Some([("team".to_string(), team.to_string())].into());
        if held {
            w.metadata.finalizers = Some(vec!["test.nicip.io/hold".into()]);
        }
        api.create(&PostParams::default(), &w)
            .await
            .expect("create");
    }
    let deleted = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default()
                .labels("team=x")
                .fields("metadata.name!=d"),
        )
        .await
        .expect("deletecollection")
        .left()
        .expect("the list of what was deleted");
    let names: Vec<String> = deleted.items.iter().map(|w| w.name_any()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(
        deleted.items[1].metadata.deletion_timestamp.is_some(),
        "b is only marked"
    );
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .iter()
        .map(|w| w.name_any())
        .collect();
    assert_eq!(left, ["b", "c", "d"]);
    let dry = api
        .delete_collection(&DeleteParams::default().dry_run(), &ListParams::default())
        .await
        .expect("dry run")
        .left()
        .expect("list");
    assert_eq!(dry.items.len(), 3);
    assert_eq!(
        api.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        3
    );
    let verbs: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.resource == "widgets")
        .map(|r| r.verb.clone())
        .filter(|v| v == "deletecollection")
        .collect();
    assert_eq!(verbs.len(), 2, "logged with the RBAC verb");
}

#[tokio::test]
async fn events_k8s_io_field_selectors() {
    use k8s_openapi::api::events::v1::Event as NewEvent;
    let sim = start().await;
    let client = sim.client().expect("client");
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let mut regarding = Vec::new();
    for name in ["p", "q"] {
        regarding.push(
            widgets
                .create(&PostParams::default(), &widget(name, 1))
                .await
                .expect("create"),
        );
    }
    let recorder = kube::runtime::events::Recorder::new(client.clone(), "test-controller".into());
    for w in &regarding {
        recorder
            .publish(&assigned_event("assigned"), &w.object_ref(&()))
            .await
            .expect("publish");
    }
    let events: Api<NewEvent> = Api::namespaced(client, "default");
    let found = events
        .list(&ListParams::default().fields(
            "regarding.name=q,regarding.kind=Widget,reportingController=test-controller,type=Normal,reason=Assigned",
        ))
        .await
        .expect("field selectors of events.k8s.io");
    let names: Vec<Option<String>> = found
        .items
        .iter()
        .map(|e| e.regarding.as_ref().and_then(|r| r.name.clone()))
        .collect();
    assert_eq!(names, [Some("q".to_string())]);
    let err = api_error(
        events
            .list(&ListParams::default().fields("involvedObject.name=q"))
            .await
            .expect_err("a core field label"),
    );
    assert_eq!(err.code, 400);
}

#[tokio::test]
async fn wrong_kinds_and_unknown_patch_ops_are_invalid() {
    let sim = start().await;
    let api: Api<Widget> = Api::namespaced(sim.client().expect("client"), "default");
    let untyped: Api<kube::api::DynamicObject> = Api::namespaced_with(
        sim.client().expect("client"),
        "default",
        &kube::api::ApiResource::erase::<Widget>(&()),
    );
    let err = api_error(
        untyped
            .create(
                &PostParams::default(),
                &dynamic(json!({"apiVersion": "test.nicip.io/v1", "kind": "Gadget",
                    "metadata": {"name": "k"}, "spec": {"size": 1, "color": "red"}})),
            )
            .await
            .expect_err("wrong kind"),
    );
    assert_status(
        &err,
        422,
        "Invalid",
        r#"Widget.test.nicip.io "k" is invalid: kind: Invalid value: "Gadget": must be Widget"#,
    );
    api.create(&PostParams::default(), &widget("k", 1))
        .await
        .expect("create");
    let patched = api
        .patch(
            "k",
            &PatchParams::default(),
            &Patch::<()>::Json(
                serde_json::from_value(json!([{"op": "add", "path": "/spec/size", "value": 2}]))
                    .expect("patch"),
            ),
        )
        .await
        .expect("a known op");
    assert_eq!(patched.spec.size, 2);
    // kube-rs cannot spell an unknown op, so it goes as a raw body through its client.
    let answer = sim
        .client()
        .expect("client")
        .request::<Widget>(
            axum::http::Request::patch("/apis/test.nicip.io/v1/namespaces/default/widgets/k")
                .header("Content-Type", "application/json-patch+json")
                .body(br#"[{"op": "frobnicate", "path": "/spec/size", "value": 3}]"#.to_vec())
                .expect("request"),
        )
        .await;
    let err = api_error(answer.expect_err("unknown op"));
    assert_status(
        &err,
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
    );
}

/// A struct whose fields one applier stops applying goes whole, as
/// structured-merge-diff's pruning removes named fields with their members:
/// `status.pendingOperation` (with its nested `ipv6Billing`) must not be left
/// as an empty object that fails its required fields.
#[tokio::test]
async fn apply_drops_a_nested_struct_the_manager_stops_applying() {
    use kube::api::{Patch, PatchParams, PostParams};
    use nicip::api::v1alpha1::NicIpClaim;
    let sim = start_project().await;
    let api: kube::Api<NicIpClaim> = Api::namespaced(sim.client().unwrap(), "default");
    let c: NicIpClaim = serde_json::from_value(
        json!({"apiVersion": "nicip.io/v1alpha1", "kind": "NicIpClaim",
        "metadata": {"name": "a"}, "spec": {"nicId": "n"}}),
    )
    .unwrap();
    api.create(&PostParams::default(), &c).await.unwrap();
    let pp = PatchParams::apply("m").force();
    let first = json!({"apiVersion": "nicip.io/v1alpha1", "kind": "NicIpClaim", "status": {"operationSequence": 1,
        "pendingOperation": {"action": "AssignIpv6", "nicId": "n", "sequence": 1, "chunk": 0, "count": 1,
            "ipv6Billing": {"internetChargeType": "ByBandwidth", "bandwidth": 10}, "startedAt": "2026-12-01T19:53:37.000000Z"}}});
    api.patch_status("a", &pp, &Patch::Apply(&first))
        .await
        .unwrap();
    let second = json!({"apiVersion": "nicip.io/v1alpha1", "kind": "NicIpClaim", "status": {"operationSequence": 1}});
    let after = api
        .patch_status("a", &pp, &Patch::Apply(&second))
        .await
        .expect("the struct goes whole");
    let status = after.status.unwrap();
    assert_eq!(status.pending_operation, None);
    assert_eq!(status.operation_sequence, Some(1));
}

#[tokio::test]
async fn pages_walk_every_namespace_once_and_selectors_before_limits() {
    let sim = start().await;
    let client = sim.client().expect("client");
    // "a" sorts before "a-x", but "a/…" after "a-x/…" as text.
    for (ns, name, team) in [
        ("a", "w1", "x"),
        ("a", "w2", "y"),
        ("a-x", "w3", "x"),
        ("a-x", "w4", "x"),
    ] {
        if name == "w1" || name == "w3" {
            create_namespace(&sim, ns).await;
        }
        let api: Api<Widget> = Api::namespaced(client.clone(), ns);
        let mut w = widget(name, 1);
        w.metadata.namespace = Some(ns.into());
        w.metadata.labels = Some([("team".to_string(), team.to_string())].into());
        api.create(&PostParams::default(), &w)
            .await
            .expect("create");
    }
    let all: Api<Widget> = Api::all(client);
    let walk = |params: ListParams| {
        let all = all.clone();
        async move {
            let mut seen = Vec::new();
            let mut remaining = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut p = params.clone();
                if let Some(t) = &token {
                    p = p.continue_token(t);
                }
                let page = all.list(&p).await.expect("page");
                seen.extend(page.items.iter().map(|w| w.name_any()));
                remaining.push(page.metadata.remaining_item_count);
                match page.metadata.continue_ {
                    Some(t) if !t.is_empty() => token = Some(t),
                    _ => return (seen, remaining),
                }
            }
        }
    };
    let (seen, remaining) = walk(ListParams::default().limit(1)).await;
    assert_eq!(seen, ["w1", "w2", "w3", "w4"]);
    assert_eq!(remaining, [Some(3), Some(2), Some(1), None]);
    // Selectors apply before the limit; what remains is not counted then.
    let (seen, remaining) = walk(ListParams::default().limit(2).labels("team=x")).await;
    assert_eq!(seen, ["w1", "w3", "w4"]);
    assert_eq!(remaining, [None, None]);
}

#[tokio::test]
async fn history_is_bounded_by_bytes_and_the_request_log_by_count() {
    let sim = KubeSim::new(vec![Widget::crd()])
        .history_bytes(1)
        .request_log_limit(2)
        .start()
        .await
        .expect("server starts");
    let api: Api<Widget> = Api::namespaced(sim.client().expect("client"), "default");
    let before = sim.resource_version().to_string();
    for name in ["a", "b", "c"] {
        api.create(&PostParams::default(), &widget(name, 1))
            .await
            .expect("create");
    }
    // One change is always kept; the first two are over the byte bound.
    let mut old = api
        .watch(&WatchParams::default().timeout(5), &before)
        .await
        .expect("watch")
        .boxed();
    match old.try_next().await.expect("event") {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410, "{e:?}"),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    let log = sim.requests();
    assert_eq!(
        log.iter().map(|r| r.verb.as_str()).collect::<Vec<_>>(),
        ["create", "watch"]
    );
    assert_eq!(sim.requests_served(), 4);
}

/// A bearer token out of a kubeconfig kubesim wrote.
fn token_of(kubeconfig: &str) -> String {
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .expect("a token")
        .to_string()
}

#[tokio::test]
async fn rbac_authorizes_as_kube_apiserver_and_records_every_decision() {
    use nicip::kubesim::Identity;
    let sim = KubeSim::new(nicip::api::crds())
        .with_rbac()
        .start()
        .await
        .unwrap();
    let admin = sim.client().unwrap();
    let alice = Identity::user("alice", &["devs"]);
    let http = reqwest::Client::new();
    let get = |path: &str, who: Option<&Identity>| {
        let mut req = http.get(format!("{}{path}", sim.url()));
        if let Some(who) = who {
            req = req.bearer_auth(token_of(&sim.kubeconfig_for(who)));
        }
        req.send()
    };
    let body = |r: reqwest::Response| async move {
        let code = r.status().as_u16();
        (code, r.json::<Value>().await.unwrap())
    };

    // Nothing bound yet: refused with kube-apiserver's Status.
    let (code, status) = body(
        get("/api/v1/namespaces/default/secrets/creds", Some(&alice))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        status,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "secrets \"creds\" is forbidden: User \"alice\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\"",
            "reason": "Forbidden", "details": {"name": "creds", "kind": "secrets"}, "code": 403})
    );
    // Refused before routing: an unknown resource is a 403, not a 404.
    let (code, status) = body(
        get("/apis/example.com/v1/widgets", Some(&alice))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        status["message"],
        "widgets.example.com is forbidden: User \"alice\" cannot list resource \"widgets\" in API group \"example.com\" at the cluster scope"
    );
    // An unknown token is a 401; discovery is open to every authenticated user.
    let r = http
        .get(format!("{}/version", sim.url()))
        .bearer_auth("made-up")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(get("/apis", Some(&alice)).await.unwrap().status(), 200);
    let (code, status) = body(get("/apis", None).await.unwrap()).await;
    assert_eq!(
        (code, status["message"].as_str()),
        (
            403,
            Some("forbidden: User \"system:anonymous\" cannot get path \"/apis\"")
        )
    );
    assert_eq!(get("/version", None).await.unwrap().status(), 200);

    // A ClusterRole bound by a RoleBinding grants in that namespace only,
    // and resourceNames restrict it to the names listed.
    let cr: k8s_openapi::api::rbac::v1::ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "secret-reader"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["creds"]},
                  {"apiGroups": ["nicip.io"], "resources": ["*/status"], "verbs": ["patch"]}]}))
    .unwrap();
    Api::all(admin.clone())
        .create(&PostParams::default(), &cr)
        .await
        .unwrap();
    let rb: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "devs-read", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "secret-reader"},
        "subjects": [{"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"}]}))
    .unwrap();
    Api::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &rb)
        .await
        .unwrap();
    let code = |path: &'static str| {
        let get = &get;
        let alice = &alice;
        async move { get(path, Some(alice)).await.unwrap().status().as_u16() }
    };
    assert_eq!(
        code("/api/v1/namespaces/default/secrets/creds").await,
        404,
        "granted"
    );
    assert_eq!(code("/api/v1/namespaces/default/secrets/other").await, 403);
    assert_eq!(code("/api/v1/namespaces/default/secrets").await, 403);
    assert_eq!(
        code("/api/v1/namespaces/kube-system/secrets/creds").await,
        403
    );
    let patch = http
        .patch(format!(
            "{}/apis/nicip.io/v1alpha1/namespaces/default/nicipclaims/c/status",
            sim.url()
        ))
        .bearer_auth(token_of(&sim.kubeconfig_for(&alice)))
        .header("content-type", "application/merge-patch+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        patch.status().as_u16(),
        404,
        "`*/status` grants the status subresource"
    );

    // roleRef cannot change.
    let rbs: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(admin, "default");
    let err = rbs
        .patch(
            "devs-read",
            &PatchParams::default(),
            &Patch::Merge(json!({"roleRef": {"name": "cluster-admin"}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 422));

    let decisions = sim.authorizations();
    let granted = decisions
        .iter()
        .find(|d| d.user == "alice" && d.allowed && d.resource == "secrets")
        .expect("the granted get is recorded");
    let grant = granted.granted_by.as_ref().unwrap();
    assert_eq!(
        (
            granted.verb.as_str(),
            granted.name.as_deref(),
            grant.binding_kind.as_str(),
            grant.binding_name.as_str(),
            grant.role_kind.as_str(),
            grant.role_name.as_str(),
            grant.rule_index
        ),
        (
            "get",
            Some("creds"),
            "RoleBinding",
            "devs-read",
            "ClusterRole",
            "secret-reader",
            0
        )
    );
    assert!(
        decisions
            .iter()
            .any(|d| d.user == "alice" && !d.allowed && d.name.as_deref() == Some("other"))
    );
}
