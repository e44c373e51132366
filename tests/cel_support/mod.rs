//! Admission policies evaluated offline: the CEL of a MutatingAdmissionPolicy or a
//! ValidatingAdmissionPolicy run with `kube-cel` (Kubernetes' CEL libraries on the `cel`
//! crate) the way the API server runs it: match conditions first, then the variables in order,
//! each visible to later ones as `variables.<name>`, then the mutations or validations.
//!
//! Two things differ from the API server, and the tests keep away from both: nothing is type
//! checked against the Pod schema and no cost is estimated (only a real API server does
//! that), and the `cel` crate cannot build messages, so `JSONPatch{op: …, path: …, value: …}`
//! is read as the map `{'op': …, 'path': …, 'value': …}`.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::HashMap;
use std::sync::Arc;

use kube_cel::KubeCelExt as _;
use kube_cel::cel::objects::{Key, Map};
use kube_cel::cel::{Context, Program, Value};
use serde_json::{Value as Json, json};

/// What an admission request gives the policy's CEL.
#[derive(Debug, Clone)]
pub struct Request {
    /// `CREATE`, `UPDATE`, ...
    pub operation: String,
    /// `ephemeralcontainers`, or absent.
    pub sub_resource: Option<String>,
    /// The object after the request.
    pub object: Json,
    /// The object before, on UPDATE.
    pub old_object: Option<Json>,
    /// The namespace.
    pub namespace: String,
    /// `request.userInfo.username`.
    pub username: String,
    /// `namespaceObject`: the request's Namespace, or `null`.
    pub namespace_object: Json,
}

impl Request {
    /// A CREATE of `object`.
    pub fn create(object: Json) -> Self {
        Self {
            operation: "CREATE".to_owned(),
            sub_resource: None,
            object,
            old_object: None,
            namespace: "shop".to_owned(),
            username: "alice".to_owned(),
            namespace_object: unlabelled("shop"),
        }
    }

    /// An UPDATE from `old` to `object`.
    pub fn update(old: Json, object: Json) -> Self {
        Self {
            operation: "UPDATE".to_owned(),
            sub_resource: None,
            object,
            old_object: Some(old),
            namespace: "shop".to_owned(),
            username: "alice".to_owned(),
            namespace_object: unlabelled("shop"),
        }
    }

    /// A DELETE of `old`: the API server gives no object.
    pub fn delete(old: Json) -> Self {
        Self {
            operation: "DELETE".to_owned(),
            sub_resource: None,
            object: Json::Null,
            old_object: Some(old),
            namespace: "shop".to_owned(),
            username: "alice".to_owned(),
            namespace_object: unlabelled("shop"),
        }
    }

    /// The same request in the namespace `namespace` (a Namespace object).
    pub fn in_namespace(mut self, namespace: Json) -> Self {
        namespace["metadata"]["name"]
            .as_str()
            .unwrap()
            .clone_into(&mut self.namespace);
        self.namespace_object = namespace;
        self
    }

    /// The same request on a subresource.
    pub fn on(mut self, sub_resource: &str) -> Self {
        self.sub_resource = Some(sub_resource.to_owned());
        self
    }

    /// The same request by another user.
    pub fn by(mut self, username: &str) -> Self {
        username.clone_into(&mut self.username);
        self
    }

    /// From a captured AdmissionReview.
    pub fn from_review(review: &Json) -> Self {
        let r = &review["request"];
        Self {
            operation: r["operation"].as_str().unwrap().to_owned(),
            sub_resource: r["subResource"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            object: r["object"].clone(),
            old_object: r.get("oldObject").filter(|o| !o.is_null()).cloned(),
            namespace: r["namespace"].as_str().unwrap_or_default().to_owned(),
            username: r["userInfo"]["username"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            namespace_object: r["namespace"].as_str().map_or(Json::Null, unlabelled),
        }
    }

    fn request_json(&self) -> Json {
        let mut r = json!({
            "operation": self.operation,
            "namespace": self.namespace,
            "userInfo": {"username": self.username},
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
        });
        if let Some(s) = &self.sub_resource {
            r["subResource"] = json!(s);
        }
        r
    }
}

/// A Namespace without labels.
fn unlabelled(name: &str) -> Json {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// A compiled policy: its match conditions, variables and the expressions that follow them.
pub struct Compiled {
    conditions: Vec<(String, Program)>,
    variables: Vec<(String, Program)>,
    /// Mutations (JSONPatch expressions) or validations (with their messages).
    bodies: Vec<(Program, Option<String>)>,
}

/// How an expression went.
pub type Outcome<T> = Result<T, String>;

fn compile(expression: &str) -> Program {
    let text = expression
        .replace("JSONPatch{op:", "{'op':")
        .replace(", path: ", ", 'path': ")
        .replace(", value: ", ", 'value': ");
    Program::compile(&text).unwrap_or_else(|e| panic!("CEL does not parse: {e}\n{expression}"))
}

fn named(list: &Json) -> Vec<(String, Program)> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|v| {
                    (
                        v["name"].as_str().unwrap().to_owned(),
                        compile(v["expression"].as_str().unwrap()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Compiled {
    /// A MutatingAdmissionPolicy's JSONPatch mutations.
    pub fn mutating(policy: &Json) -> Self {
        let spec = &policy["spec"];
        let bodies = spec["mutations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                assert_eq!(m["patchType"], "JSONPatch", "only JSONPatch mutations");
                (
                    compile(m["jsonPatch"]["expression"].as_str().unwrap()),
                    None,
                )
            })
            .collect();
        Self {
            conditions: named(&spec["matchConditions"]),
            variables: named(&spec["variables"]),
            bodies,
        }
    }

    /// A ValidatingAdmissionPolicy's validations.
    pub fn validating(policy: &Json) -> Self {
        let spec = &policy["spec"];
        let bodies = spec["validations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    compile(v["expression"].as_str().unwrap()),
                    v["message"].as_str().map(str::to_owned),
                )
            })
            .collect();
        Self {
            conditions: named(&spec["matchConditions"]),
            variables: named(&spec["variables"]),
            bodies,
        }
    }

    fn context(&self, request: &Request) -> Outcome<Option<Context<'static>>> {
        let mut ctx = Context::default().with_all();
        ctx.add_variable("object", request.object.clone())
            .map_err(|e| e.to_string())?;
        ctx.add_variable(
            "oldObject",
            request.old_object.clone().unwrap_or(Json::Null),
        )
        .map_err(|e| e.to_string())?;
        ctx.add_variable("request", request.request_json())
            .map_err(|e| e.to_string())?;
        ctx.add_variable("namespaceObject", request.namespace_object.clone())
            .map_err(|e| e.to_string())?;
        ctx.add_variable_from_value(
            "variables",
            Value::Map(Map::from(HashMap::<Key, Value>::new())),
        );
        for (name, program) in &self.conditions {
            match program.execute(&ctx) {
                Ok(Value::Bool(true)) => {}
                Ok(Value::Bool(false)) => return Ok(None),
                other => return Err(format!("match condition {name}: {other:?}")),
            }
        }
        let mut values: HashMap<Key, Value> = HashMap::new();
        for (name, program) in &self.variables {
            let value = program
                .execute(&ctx)
                .map_err(|e| format!("variable {name}: {e:?}"))?;
            values.insert(Key::String(Arc::new(name.clone())), value);
            ctx.add_variable_from_value("variables", Value::Map(Map::from(values.clone())));
        }
        Ok(Some(ctx))
    }

    /// The JSON Patch the policy makes for `request`: `Ok(None)` when a match condition
    /// excludes it, `Err` when an expression fails (under `failurePolicy: Ignore`, the Pod is
    /// admitted unchanged).
    pub fn mutate(&self, request: &Request) -> Outcome<Option<Vec<Json>>> {
        let Some(ctx) = self.context(request)? else {
            return Ok(None);
        };
        let mut ops = Vec::new();
        for (program, _) in &self.bodies {
            let value = program
                .execute(&ctx)
                .map_err(|e| format!("mutation: {e:?}"))?;
            match to_json(&value) {
                Json::Array(list) => ops.extend(list),
                other => return Err(format!("mutation is not a list: {other}")),
            }
        }
        Ok(Some(ops))
    }

    /// `request.object` after the policy: unchanged when it does not apply.
    pub fn apply(&self, request: &Request) -> Outcome<Json> {
        let mut object = request.object.clone();
        if let Some(ops) = self.mutate(request)? {
            let patch: json_patch::Patch = serde_json::from_value(Json::Array(ops.clone()))
                .map_err(|e| format!("not a JSON Patch: {e}: {ops:?}"))?;
            json_patch::patch(&mut object, &patch).map_err(|e| format!("{e}: {ops:?}"))?;
        }
        Ok(object)
    }

    /// Whether the validating policy admits `request`: `Ok(None)` when it does not apply,
    /// `Ok(Some(Err(message)))` for the first validation that fails.
    pub fn validate(&self, request: &Request) -> Outcome<Option<Result<(), String>>> {
        let Some(ctx) = self.context(request)? else {
            return Ok(None);
        };
        for (program, message) in &self.bodies {
            match program.execute(&ctx) {
                Ok(Value::Bool(true)) => {}
                Ok(Value::Bool(false)) => {
                    return Ok(Some(Err(message.clone().unwrap_or_default())));
                }
                other => return Err(format!("validation: {other:?}")),
            }
        }
        Ok(Some(Ok(())))
    }
}

/// A CEL value as JSON.
pub fn to_json(value: &Value) -> Json {
    match value {
        Value::List(l) => Json::Array(l.iter().map(to_json).collect()),
        Value::Map(m) => Json::Object(
            m.map
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Key::String(s) => s.to_string(),
                        Key::Int(i) => i.to_string(),
                        Key::Uint(u) => u.to_string(),
                        Key::Bool(b) => b.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Value::Int(i) => json!(i),
        Value::UInt(u) => json!(u),
        Value::Float(f) => json!(f),
        Value::String(s) => json!(s.as_str()),
        Value::Bool(b) => json!(b),
        Value::Null => Json::Null,
        other => panic!("no JSON for {other:?}"),
    }
}
