//! Watch: a chunked stream of `{"type": ..., "object": ...}` lines.
//!
//! As kube-apiserver: without a resourceVersion (or with `0`) the watch starts
//! with an ADDED event per existing object; from a resourceVersion it replays
//! the retained changes after it, or sends one `ERROR` event with a `410`
//! `Expired` Status when that version is older than the history; a selector
//! transition turns a MODIFIED into ADDED or DELETED; `sendInitialEvents`
//! ends the initial events with the `k8s.io/initial-events-end` bookmark.

use super::{
    ApiError, Output, Req, Server, check_list_options, error_response, go_bool, into_view,
    too_large, view_json,
};
use crate::kubesim::discovery::{self, ResourceType};
use crate::kubesim::select::Selector;
use crate::kubesim::store::{Change, ChangeType, ObjectKey, Stored};
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

struct Feed {
    t: ResourceType,
    ns: String,
    selector: Selector,
    output: Output,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
}

impl Feed {
    async fn send(&self, kind: &str, object: Value) -> bool {
        let mut line = json!({"type": kind, "object": object}).to_string();
        line.push('\n');
        self.tx.send(Ok(Bytes::from(line))).await.is_ok()
    }

    /// An event of a stored object: its stored text spliced into the line
    /// when the client asked for plain objects.
    async fn send_stored(&self, kind: &str, obj: &Stored) -> bool {
        if self.output != Output::Object {
            return self.send(kind, self.render(obj.value())).await;
        }
        let line = format!(
            "{{\"object\":{},\"type\":\"{kind}\"}}\n",
            view_json(&self.t, obj)
        );
        self.tx.send(Ok(Bytes::from(line))).await.is_ok()
    }

    fn render(&self, obj: Value) -> Value {
        let obj = into_view(&self.t, obj);
        match self.output {
            Output::Table(include) => {
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(Value::Null);
                discovery::table(&self.t, &[&obj], json!({"resourceVersion": rv}), include)
            }
            Output::PartialMetadata => discovery::partial_metadata(&obj),
            Output::Object | Output::Yaml => obj,
        }
    }

    /// Whether the object at `key` is one this watch shows (parsed only when
    /// a selector needs it).
    fn wanted(&self, key: &ObjectKey, obj: &Stored) -> bool {
        (self.ns.is_empty() || self.ns == key.0)
            && (self.selector.is_empty() || self.selector.matches_in(&self.t, &obj.value()))
    }

    async fn change(&self, c: &Change) -> bool {
        if c.resource != self.t.storage {
            return true;
        }
        let now = self.wanted(&c.key, &c.object);
        let before = c.old.as_ref().is_some_and(|o| self.wanted(&c.key, o));
        let kind = match (c.kind, before, now) {
            (ChangeType::Added, _, true) => "ADDED",
            (ChangeType::Modified, true, true) => "MODIFIED",
            (ChangeType::Modified, false, true) => "ADDED",
            (ChangeType::Modified, true, false) => "DELETED",
            (ChangeType::Deleted, _, true) => "DELETED",
            _ => return true,
        };
        // An object leaving the selector is shown as it was (the state that
        // matched), at the change's resourceVersion, as kube-apiserver's cacher does.
        match (kind, c.kind, &c.old) {
            ("DELETED", ChangeType::Modified, Some(old)) => {
                let mut o = old.value();
                if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.insert("resourceVersion".into(), json!(c.rv.to_string()));
                }
                self.send(kind, self.render(o)).await
            }
            _ => self.send_stored(kind, &c.object).await,
        }
    }

    async fn bookmark(&self, rv: u64, initial_end: bool) -> bool {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            // The empty list a client would have got, base64 of its JSON, as
            // kube-apiserver's `kubernetes.io/initial-events-list-blueprint`.
            use base64::Engine;
            let blueprint = json!({"kind": format!("{}List", self.t.kind), "apiVersion": self.t.api_version(),
                "metadata": {}, "items": []});
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true",
                "kubernetes.io/initial-events-list-blueprint":
                    base64::engine::general_purpose::STANDARD.encode(blueprint.to_string())});
        }
        self.send(
            "BOOKMARK",
            json!({"kind": self.t.kind, "apiVersion": self.t.api_version(), "metadata": meta}),
        )
        .await
    }
}

fn gone(since: u64, oldest: u64) -> Value {
    ApiError::expired(format!("too old resource version: {since} ({oldest})")).body()
}

impl Server {
    pub(super) fn watch(self: &Arc<Self>, r: &Req) -> Response {
        if r.output == Output::Yaml {
            // YAML has no stream framing: kube-apiserver refuses it for watches.
            return error_response(&ApiError::new(
                406,
                "NotAcceptable",
                "only the following media types are accepted for watches: application/json",
            ));
        }
        if let Err(e) = check_list_options(r, true) {
            return error_response(&e);
        }
        let selector = match self.selector(r) {
            Ok(s) => s,
            Err(e) => return error_response(&e),
        };
        let since = match r.q("resourceVersion").map(str::parse::<u64>).transpose() {
            Ok(v) => v,
            Err(_) => return error_response(&ApiError::bad_request("invalid resource version")),
        };
        let send_initial = r.q("sendInitialEvents").and_then(go_bool) == Some(true);
        // `sendInitialEvents=false` asks for changes only, even without a resourceVersion.
        let no_initial = r.q("sendInitialEvents").and_then(go_bool) == Some(false);
        let bookmarks = r.q("allowWatchBookmarks").and_then(go_bool) == Some(true);
        let timeout = r
            .q("timeoutSeconds")
            .and_then(|s| s.parse::<u64>().ok())
            // kube-apiserver reads 0 as "no timeout given".
            .filter(|secs| *secs > 0)
            .map(Duration::from_secs)
            .unwrap_or(self.watch_timeout);
        let initial_state = send_initial || (!no_initial && matches!(since, None | Some(0)));
        let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
        let feed = Feed {
            t: r.t.clone(),
            ns: r.ns.clone(),
            selector,
            output: r.output,
            tx,
        };
        let st = self.store.lock();
        if let Some(since) = since
            && since > st.current_rv()
        {
            return error_response(&too_large(since, st.current_rv()));
        }
        let mut announced = st.announcements();
        // Where the changes to send start: now, after the initial objects, or
        // after the client's resourceVersion.
        let start = if initial_state {
            Ok(st.current_rv())
        } else {
            match since {
                Some(since) if since < st.oldest_resumable() => Err(st.oldest_resumable()),
                Some(since) => Ok(since),
                None => Ok(st.current_rv()),
            }
        };
        // References only: the feed filters and renders them after the lock is released.
        let initial: Vec<(ObjectKey, Arc<Stored>)> = if initial_state {
            let ns = (!r.ns.is_empty()).then_some(r.ns.as_str());
            st.list(&r.t.storage, ns)
                .map(|(k, o)| (k.clone(), o.clone()))
                .collect()
        } else {
            Vec::new()
        };
        drop(st);
        let interval = self.bookmark_interval;
        let mut stopping = self.stopping.clone();
        let server = self.clone();
        tokio::spawn(async move {
            let mut last_rv = match start {
                Ok(rv) => rv,
                Err(oldest) => {
                    feed.send("ERROR", gone(since.unwrap_or_default(), oldest))
                        .await;
                    return;
                }
            };
            for (_, obj) in initial.iter().filter(|(k, o)| feed.wanted(k, o)) {
                if !feed.send_stored("ADDED", obj).await {
                    return;
                }
            }
            drop(initial);
            if send_initial && !feed.bookmark(last_rv, true).await {
                return;
            }
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            loop {
                // Catch up with the history; a watch it has left behind is gone.
                let caught_up = server.store.lock().changes_after(&feed.t.storage, last_rv);
                match caught_up {
                    Ok((changes, rv)) => {
                        for c in &changes {
                            if !feed.change(c).await {
                                return;
                            }
                        }
                        last_rv = rv;
                    }
                    Err(_) => {
                        feed.send("ERROR", gone(last_rv, last_rv + 1)).await;
                        return;
                    }
                }
                tokio::select! {
                    _ = &mut deadline => return,
                    _ = feed.tx.closed() => return,
                    _ = stopping.changed() => return,
                    _ = ticker.tick(), if bookmarks => {
                        if !feed.bookmark(last_rv, false).await { return; }
                    }
                    woke = announced.changed() => if woke.is_err() { return },
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let mut resp = Response::new(Body::from_stream(stream));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}
