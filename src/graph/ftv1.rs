//! Federated inline tracing ("ftv1"): when the router asks for it, the
//! response carries `extensions.ftv1`, a base64 protobuf `Trace` (Apollo's
//! `reports.proto`) with one node per resolved field, its timings and the
//! errors at its path. Routers merge it into their query-plan trace and report
//! per-field statistics from it.
//!
//! Nothing here runs unless the request was given an [`InlineTrace`]: the
//! per-field hook in [`super::conventions`] is one atomic load otherwise.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_graphql::extensions::ResolveInfo;
use async_graphql::{PathSegment, QueryPathSegment, Response, ServerError, Value};
use base64::Engine;
use prost::Message;

/// The messages of Apollo's `reports.proto` that an inline trace uses, with
/// its field numbers; the fields a subgraph never sends are left out (a
/// decoder skips what it does not know, and these are all optional).
pub mod proto {
    /// `google.protobuf.Timestamp`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    /// `Trace`: an inline trace holds only its times and its tree.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Trace {
        #[prost(message, optional, tag = "4")]
        pub start_time: Option<Timestamp>,
        #[prost(message, optional, tag = "3")]
        pub end_time: Option<Timestamp>,
        #[prost(uint64, tag = "11")]
        pub duration_ns: u64,
        #[prost(message, optional, tag = "14")]
        pub root: Option<Node>,
    }

    /// `Trace.Node`: a resolved field, or a list element (only `index` and
    /// children), or the root (no id).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Node {
        #[prost(oneof = "NodeId", tags = "1, 2")]
        pub id: Option<NodeId>,
        #[prost(string, tag = "14")]
        pub original_field_name: String,
        #[prost(string, tag = "3")]
        pub r#type: String,
        #[prost(string, tag = "13")]
        pub parent_type: String,
        /// Nanoseconds after the trace's start.
        #[prost(uint64, tag = "8")]
        pub start_time: u64,
        /// Nanoseconds after the trace's start.
        #[prost(uint64, tag = "9")]
        pub end_time: u64,
        #[prost(message, repeated, tag = "11")]
        pub error: Vec<Error>,
        #[prost(message, repeated, tag = "12")]
        pub child: Vec<Node>,
    }

    /// `Trace.Node.id`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum NodeId {
        #[prost(string, tag = "1")]
        ResponseName(String),
        #[prost(uint32, tag = "2")]
        Index(u32),
    }

    /// `Trace.Error`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Error {
        #[prost(string, tag = "1")]
        pub message: String,
        #[prost(message, repeated, tag = "2")]
        pub location: Vec<Location>,
        #[prost(uint64, tag = "3")]
        pub time_ns: u64,
        /// The whole error as the response shows it, as JSON text.
        #[prost(string, tag = "4")]
        pub json: String,
    }

    /// `Trace.Location`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint32, tag = "1")]
        pub line: u32,
        #[prost(uint32, tag = "2")]
        pub column: u32,
    }
}

/// One step of a response path.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Step {
    Field(String),
    Index(u32),
}

impl Step {
    fn index(index: usize) -> Step {
        Step::Index(u32::try_from(index).unwrap_or(u32::MAX))
    }
}

/// A node while the request runs; `children` are indexes into the arena.
#[derive(Default)]
struct Recorded {
    node: proto::Node,
    /// A field whose resolution was timed (not a list element, nor a node
    /// made only to hold an error).
    timed: bool,
    /// Set once the field's resolution (children included) has finished.
    ended: bool,
    children: Vec<usize>,
}

struct Tree {
    /// Index 0 is the root.
    nodes: Vec<Recorded>,
    /// Every node at each path, oldest first. A path can repeat: async-graphql
    /// gives the fields under `_entities` paths without the list index, so
    /// those of all representations hang under the `_entities` node.
    by_path: HashMap<Vec<Step>, Vec<usize>>,
}

/// The trace of one request, shared by its resolvers (request data, in an
/// `Arc`).
pub struct InlineTrace {
    started: Instant,
    started_at: SystemTime,
    tree: Mutex<Tree>,
}

impl InlineTrace {
    /// Starts the clock: node times are relative to this instant.
    pub fn start() -> InlineTrace {
        InlineTrace {
            started: Instant::now(),
            started_at: SystemTime::now(),
            tree: Mutex::new(Tree {
                nodes: vec![Recorded::default()],
                by_path: HashMap::new(),
            }),
        }
    }

    fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn tree(&self) -> MutexGuard<'_, Tree> {
        // A panic elsewhere while holding the lock leaves a tree that is still
        // well formed (every push is complete), so keep using it.
        self.tree.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the errors at their paths, stops the clock and adds
    /// `extensions.ftv1` to the response.
    pub fn finish(&self, response: &mut Response) {
        let duration_ns = self.elapsed_ns();
        let ended_at = SystemTime::now();
        let mut tree = self.tree();
        for error in &response.errors {
            tree.record_error(error);
        }
        let trace = proto::Trace {
            start_time: Some(timestamp(self.started_at)),
            end_time: Some(timestamp(ended_at)),
            duration_ns,
            root: Some(tree.take(0).0),
        };
        let encoded = base64::engine::general_purpose::STANDARD.encode(trace.encode_to_vec());
        response
            .extensions
            .insert("ftv1".to_string(), Value::String(encoded));
    }
}

impl Tree {
    /// The node a new child of `path` hangs under: the newest one still
    /// running (a field's children resolve while it runs), else the newest.
    /// Missing nodes (list elements, fields whose resolver was not traced)
    /// are created.
    fn node_at(&mut self, path: &[Step]) -> usize {
        let Some((last, parent_path)) = path.split_last() else {
            return 0;
        };
        if let Some(found) = self.by_path.get(path) {
            let running = found.iter().rev().find(|&&i| !self.nodes[i].ended);
            if let Some(&i) = running.or(found.last()) {
                return i;
            }
        }
        let parent = self.node_at(parent_path);
        self.add(parent, path.to_vec(), last.clone())
    }

    fn add(&mut self, parent: usize, path: Vec<Step>, step: Step) -> usize {
        let index = self.nodes.len();
        let id = match step {
            Step::Field(name) => proto::NodeId::ResponseName(name),
            Step::Index(i) => proto::NodeId::Index(i),
        };
        self.nodes.push(Recorded {
            node: proto::Node {
                id: Some(id),
                ..Default::default()
            },
            timed: false,
            // Only timed fields run; a node made as a parent never does.
            ended: true,
            children: Vec::new(),
        });
        self.nodes[parent].children.push(index);
        self.by_path.entry(path).or_default().push(index);
        index
    }

    fn record_error(&mut self, error: &ServerError) {
        let path: Vec<Step> = error
            .path
            .iter()
            .map(|segment| match segment {
                PathSegment::Field(name) => Step::Field(name.clone()),
                PathSegment::Index(i) => Step::index(*i),
            })
            .collect();
        let at = self.node_at(&path);
        self.nodes[at].node.error.push(proto::Error {
            message: error.message.clone(),
            location: error
                .locations
                .iter()
                .map(|pos| proto::Location {
                    line: u32::try_from(pos.line).unwrap_or(u32::MAX),
                    column: u32::try_from(pos.column).unwrap_or(u32::MAX),
                })
                .collect(),
            time_ns: 0,
            json: serde_json::to_string(error).unwrap_or_default(),
        });
    }

    /// Moves node `index` and its subtree out of the arena, with the time
    /// the subtree's first field started. Recursion depth is the response's
    /// depth, which the query limits bound.
    ///
    /// async-graphql's hook times a field together with its children; the
    /// trace wants the resolver alone, as Apollo's servers report it. The
    /// children start as soon as the resolver has returned, so a field ends
    /// where its first child starts.
    fn take(&mut self, index: usize) -> (proto::Node, Option<u64>) {
        let recorded = std::mem::take(&mut self.nodes[index]);
        let mut node = recorded.node;
        let mut first_child_start: Option<u64> = None;
        for child in recorded.children {
            let (child, start) = self.take(child);
            first_child_start = match (first_child_start, start) {
                (Some(earliest), Some(start)) => Some(earliest.min(start)),
                (earliest, start) => earliest.or(start),
            };
            node.child.push(child);
        }
        if !recorded.timed {
            return (node, first_child_start);
        }
        if let Some(start) = first_child_start {
            node.end_time = node.end_time.min(start);
        }
        let start = node.start_time;
        (node, Some(start))
    }
}

fn timestamp(time: SystemTime) -> proto::Timestamp {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    proto::Timestamp {
        seconds: i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since_epoch.subsec_nanos()).unwrap_or(0),
    }
}

/// Times one field's resolution from its creation until it is dropped
/// (also when the field's future is cancelled).
pub(super) struct FieldTiming<'a> {
    trace: &'a InlineTrace,
    node: usize,
}

impl<'a> FieldTiming<'a> {
    /// Opens the field's node. Calls for list elements are not timed: their
    /// nodes carry only an index, as Apollo's do.
    pub(super) fn start(trace: &'a InlineTrace, info: &ResolveInfo<'_>) -> Option<FieldTiming<'a>> {
        let QueryPathSegment::Name(response_name) = info.path_node.segment else {
            return None;
        };
        let mut path = Vec::new();
        let mut at = Some(info.path_node);
        while let Some(node) = at {
            path.push(match node.segment {
                QueryPathSegment::Name(name) => Step::Field(name.to_string()),
                QueryPathSegment::Index(i) => Step::index(i),
            });
            at = node.parent;
        }
        path.reverse();
        let start_time = trace.elapsed_ns();
        let mut tree = trace.tree();
        let parent = tree.node_at(&path[..path.len() - 1]);
        let node = tree.add(parent, path, Step::Field(response_name.to_string()));
        let recorded = &mut tree.nodes[node];
        recorded.timed = true;
        recorded.ended = false;
        recorded.node.r#type = info.return_type.to_string();
        recorded.node.parent_type = info.parent_type.to_string();
        if response_name != info.name {
            recorded.node.original_field_name = info.name.to_string();
        }
        recorded.node.start_time = start_time;
        Some(FieldTiming { trace, node })
    }
}

impl Drop for FieldTiming<'_> {
    fn drop(&mut self) {
        let end_time = self.trace.elapsed_ns();
        let mut tree = self.trace.tree();
        if let Some(recorded) = tree.nodes.get_mut(self.node) {
            recorded.node.end_time = end_time;
            recorded.ended = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(response: &Response) -> proto::Trace {
        let Some(Value::String(encoded)) = response.extensions.get("ftv1") else {
            panic!("no ftv1 in {:?}", response.extensions);
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        proto::Trace::decode(bytes.as_slice()).unwrap()
    }

    #[test]
    fn errors_land_on_their_path_creating_the_nodes_between() {
        let trace = InlineTrace::start();
        let mut response = Response::new(Value::Null);
        let mut error = ServerError::new("no", None);
        error.path = vec![
            PathSegment::Field("orders".into()),
            PathSegment::Index(2),
            PathSegment::Field("total".into()),
        ];
        response.errors.push(error);
        response
            .errors
            .push(ServerError::new("whole request", None));
        trace.finish(&mut response);

        let decoded = decode(&response);
        let root = decoded.root.unwrap();
        assert_eq!(root.error.len(), 1, "an error without a path is the root's");
        assert_eq!(root.error[0].message, "whole request");
        let orders = &root.child[0];
        assert_eq!(
            orders.id,
            Some(proto::NodeId::ResponseName("orders".into()))
        );
        let element = &orders.child[0];
        assert_eq!(element.id, Some(proto::NodeId::Index(2)));
        let total = &element.child[0];
        assert_eq!(total.error[0].message, "no");
        let json: serde_json::Value = serde_json::from_str(&total.error[0].json).unwrap();
        assert_eq!(json["path"], serde_json::json!(["orders", 2, "total"]));
        assert!(decoded.start_time.is_some() && decoded.end_time.is_some());
    }

    #[test]
    fn a_trace_without_fields_is_a_bare_root() {
        let trace = InlineTrace::start();
        let mut response = Response::new(Value::Null);
        trace.finish(&mut response);
        let root = decode(&response).root.unwrap();
        assert!(root.id.is_none() && root.child.is_empty() && root.error.is_empty());
    }
}
