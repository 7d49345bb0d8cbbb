//! The OpenAPI document, finished in one place so that it says what the server does.
//!
//! The handlers' annotations give each operation its own responses and types; this module
//! adds what is true of many operations at once, and what serde types cannot express:
//!
//! - the responses every operation of a kind can give: 400 for a parameter or body that does
//!   not parse, 401 where a token is required, 413/415/422 where there is a body, 422 where
//!   query values are range-checked, 429 on the rate-limited auth endpoints and wherever a
//!   token is required (the user's allowance), 503 wherever the database is needed;
//! - each request field's exact rules (the same constants the `domain` parsers apply, so a
//!   request the document calls valid is never refused and an invalid one never accepted);
//! - rules across fields: "at least one of" for PATCH bodies, "exactly one of" `user_id`
//!   and `email` when adding a member;
//! - the table of paths and their methods, from which undeclared methods are answered 405
//!   with `Allow`.

use serde_json::{json, Map, Value};

use crate::domain::{
    CommentBody, DisplayName, DocumentTitle, VersionName, WorkspaceName, BOUNDED_TEXT_PATTERN,
    EMAIL_MAX, EMAIL_PATTERN, SLUG_PATTERN,
};

/// Text that may not contain NUL (which PostgreSQL cannot store).
const NO_NUL_PATTERN: &str = "^[^\\u0000]*$";

/// The finished document.
pub fn finish(doc: &utoipa::openapi::OpenApi) -> Value {
    let mut v = serde_json::to_value(doc).unwrap_or_else(|_| json!({}));
    add_components(&mut v);
    refine_bodies(&mut v);
    refine_parameters(&mut v);
    add_responses(&mut v);
    v
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

fn add_components(v: &mut Value) {
    let retry_after = json!({
        "Retry-After": {
            "description": "Seconds to wait before trying again",
            "schema": {"type": "integer", "minimum": 1}
        }
    });
    let mut too_many = problem("Too many requests; wait `Retry-After` seconds (`rate_limited`)");
    too_many["headers"] = retry_after.clone();
    let mut busy = problem(
        "The database is unavailable (`unavailable`), or every password-hashing slot is busy \
         (`busy`, with `Retry-After`)",
    );
    busy["headers"] = json!({
        "Retry-After": {
            "description": "Seconds to wait before trying again (with `busy`)",
            "required": false,
            "schema": {"type": "integer", "minimum": 1}
        }
    });
    let mut unauthorized = problem(
        "No access token (`missing_token`), or one that is forged or malformed \
         (`invalid_token`) or expired (`token_expired`)",
    );
    unauthorized["headers"] = json!({
        "WWW-Authenticate": {"description": "The Bearer challenge", "schema": {"type": "string"}}
    });
    let responses = json!({
        "BadRequest": problem(
            "A path or query parameter that does not parse (`invalid_parameter`), a bad \
             cursor (`invalid_cursor`), a body that is not JSON (`invalid_json`) or a bad \
             `If-Match` (`invalid_if_match`)"
        ),
        "Unauthorized": unauthorized,
        "PayloadTooLarge": problem("The body is over `http.max_body_bytes` (`payload_too_large`)"),
        "UnsupportedMediaType": problem("The body is not `application/json` (`unsupported_media_type`)"),
        "ValidationFailed": problem("Fields or query values out of their rules (`validation_failed`, each listed in `errors`)"),
        "TooManyRequests": too_many,
        "Unavailable": busy,
    });
    let components = v
        .as_object_mut()
        .and_then(|o| {
            o.entry("components")
                .or_insert_with(|| json!({}))
                .as_object_mut()
        })
        .map(|c| c.entry("responses").or_insert_with(|| json!({})));
    if let (Some(Value::Object(target)), Value::Object(add)) = (components, responses) {
        target.extend(add);
    }
}

/// Merges `rules` into the schema of `field` of component `schema`.
fn constrain(v: &mut Value, schema: &str, field: &str, rules: Value) {
    let Some(Value::Object(prop)) =
        v.pointer_mut(&format!("/components/schemas/{schema}/properties/{field}"))
    else {
        tracing::warn!(schema, field, "OpenAPI refinement names a missing field");
        return;
    };
    if let Value::Object(rules) = rules {
        prop.extend(rules);
    }
}

/// Sets a keyword on component `schema` itself.
fn set(v: &mut Value, schema: &str, key: &str, value: Value) {
    if let Some(Value::Object(s)) = v.pointer_mut(&format!("/components/schemas/{schema}")) {
        s.insert(key.to_string(), value);
    }
}

fn bounded(max: usize) -> Value {
    json!({"pattern": BOUNDED_TEXT_PATTERN, "maxLength": max})
}

/// "At least one of `fields`, not null."
fn at_least_one(fields: &[(&str, Value)]) -> Value {
    Value::Array(
        fields
            .iter()
            .map(|(field, schema)| {
                let mut properties = Map::new();
                properties.insert(field.to_string(), schema.clone());
                json!({"required": [field], "properties": properties})
            })
            .collect(),
    )
}

fn refine_bodies(v: &mut Value) {
    let email = json!({"pattern": EMAIL_PATTERN, "maxLength": EMAIL_MAX});
    let slug = json!({"pattern": SLUG_PATTERN, "minLength": 2, "maxLength": 64});
    let content = json!({"pattern": NO_NUL_PATTERN});
    constrain(v, "RegisterRequest", "email", email.clone());
    constrain(
        v,
        "RegisterRequest",
        "password",
        json!({"minLength": 8, "maxLength": 256}),
    );
    constrain(
        v,
        "RegisterRequest",
        "display_name",
        bounded(DisplayName::MAX),
    );
    constrain(
        v,
        "ChangePassword",
        "new_password",
        json!({"minLength": 8, "maxLength": 256}),
    );
    for schema in ["CreateWorkspace", "UpdateWorkspace"] {
        constrain(v, schema, "name", bounded(WorkspaceName::MAX));
        constrain(v, schema, "slug", slug.clone());
    }
    for schema in ["CreateDocument", "UpdateDocument"] {
        constrain(v, schema, "title", bounded(DocumentTitle::MAX));
        constrain(v, schema, "content", content.clone());
    }
    for schema in ["CreateComment", "UpdateComment"] {
        constrain(v, schema, "body", bounded(CommentBody::MAX));
    }
    constrain(v, "AddMember", "email", email.clone());
    constrain(v, "PasswordResetRequest", "email", email.clone());
    constrain(
        v,
        "PasswordResetConfirm",
        "new_password",
        json!({"minLength": 8, "maxLength": 256}),
    );
    constrain(v, "PutUser", "email", email);
    constrain(
        v,
        "UpdateAccount",
        "display_name",
        bounded(DisplayName::MAX),
    );
    constrain(v, "CreateApiToken", "name", bounded(100));
    constrain(
        v,
        "CreateApiToken",
        "scopes",
        json!({"minItems": 1, "items": {"type": "string", "enum": ["read", "write", "admin"]}}),
    );
    constrain(
        v,
        "CreateApiToken",
        "expires_in_days",
        json!({"minimum": 1, "maximum": 3650}),
    );
    set(
        v,
        "UpdateAccount",
        "anyOf",
        at_least_one(&[
            ("display_name", json!({"type": "string"})),
            ("notification_preferences", json!({"type": "object"})),
        ]),
    );
    constrain(v, "PutUser", "display_name", bounded(DisplayName::MAX));
    constrain(v, "PutWorkspace", "name", bounded(WorkspaceName::MAX));
    constrain(v, "CreateVersion", "name", bounded(VersionName::MAX));
    constrain(v, "PutWorkspace", "slug", slug.clone());
    set(
        v,
        "UpdateWorkspace",
        "anyOf",
        at_least_one(&[
            ("name", json!({"type": "string"})),
            ("slug", json!({"type": "string"})),
        ]),
    );
    set(
        v,
        "UpdateDocument",
        "anyOf",
        at_least_one(&[
            ("title", json!({"type": "string"})),
            ("content", json!({"type": "string"})),
        ]),
    );
    set(
        v,
        "UpdateComment",
        "anyOf",
        at_least_one(&[
            ("body", json!({"type": "string"})),
            ("resolved", json!({"type": "boolean"})),
        ]),
    );
    set(
        v,
        "AddMember",
        "oneOf",
        json!([
            {"required": ["user_id"], "properties": {"user_id": {"type": "integer"}, "email": {"type": "null"}}},
            {"required": ["email"], "properties": {"email": {"type": "string"}, "user_id": {"type": "null"}}},
        ]),
    );
    // Request bodies refuse unknown fields.
    for schema in [
        "RegisterRequest",
        "LoginRequest",
        "RefreshRequest",
        "ChangePassword",
        "CreateWorkspace",
        "UpdateWorkspace",
        "AddMember",
        "ChangeRole",
        "CreateDocument",
        "UpdateDocument",
        "CreateComment",
        "UpdateComment",
        "LinkToken",
        "PasswordResetRequest",
        "PasswordResetConfirm",
        "AcceptInvitation",
        "PutUser",
        "PutWorkspace",
        "PutMembership",
        "UpdateAccount",
        "DeleteAccount",
        "CreateApiToken",
        "NotificationPreferences",
        "ExchangeRequest",
        "WorkspaceSsoView",
        "CreateVersion",
        "AnchorInput",
    ] {
        set(v, schema, "additionalProperties", Value::Bool(false));
    }
}

fn refine_parameters(v: &mut Value) {
    let if_match = json!({"type": "string", "pattern": super::documents::IF_MATCH_PATTERN});
    for_each_operation(v, |_, _, op| {
        let Some(Value::Array(params)) = op.get_mut("parameters") else {
            return;
        };
        for p in params {
            if p["in"] == "header" && p["name"] == "If-Match" {
                p["schema"] = if_match.clone();
            }
        }
    });
}

fn add_responses(v: &mut Value) {
    for_each_operation(v, |path, _, op| {
        let secured = op
            .get("security")
            .and_then(Value::as_array)
            .is_some_and(|s| !s.is_empty());
        let params = op
            .get("parameters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let has_query = params.iter().any(|p| p["in"] == "query");
        let has_body = op.get("requestBody").is_some();
        let api = path.starts_with("/api/v1/");
        let mut add = Vec::new();
        if !params.is_empty() || has_body {
            add.push(("400", "BadRequest"));
        }
        if secured {
            add.push(("401", "Unauthorized"));
        }
        if has_body {
            add.extend([
                ("413", "PayloadTooLarge"),
                ("415", "UnsupportedMediaType"),
                ("422", "ValidationFailed"),
            ]);
        }
        if has_query {
            add.push(("422", "ValidationFailed"));
        }
        // The auth endpoints' own limits, and every signed-in user's allowance.
        if path.starts_with("/api/v1/auth/") || secured {
            add.push(("429", "TooManyRequests"));
        }
        if api {
            add.push(("503", "Unavailable"));
        }
        let Some(Value::Object(responses)) = op.get_mut("responses") else {
            return;
        };
        for (status, name) in add {
            responses
                .entry(status)
                .or_insert_with(|| json!({"$ref": format!("#/components/responses/{name}")}));
        }
    });
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn for_each_operation(v: &mut Value, mut f: impl FnMut(&str, &str, &mut Map<String, Value>)) {
    let Some(Value::Object(paths)) = v.get_mut("paths") else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Value::Object(item) = item else { continue };
        for (method, op) in item.iter_mut() {
            if let (true, Value::Object(op)) = (METHODS.contains(&method.as_str()), op) {
                f(path, method, op);
            }
        }
    }
}

/// Each path template of the document with the methods it answers, for 405 `Allow`.
pub struct Routes(Vec<(Vec<String>, Vec<String>)>);

impl Routes {
    pub fn from_document(v: &Value, extra: &[(&str, &str)]) -> Routes {
        let mut routes: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        let mut add = |path: &str, method: &str| {
            let segments: Vec<String> = path.split('/').map(str::to_string).collect();
            let method = method.to_uppercase();
            match routes.iter_mut().find(|(s, _)| *s == segments) {
                Some((_, methods)) if !methods.contains(&method) => methods.push(method),
                Some(_) => {}
                None => routes.push((segments, vec![method])),
            }
        };
        if let Some(Value::Object(paths)) = v.get("paths") {
            for (path, item) in paths {
                if let Value::Object(item) = item {
                    for method in item.keys().filter(|m| METHODS.contains(&m.as_str())) {
                        add(path, method);
                    }
                }
            }
        }
        for (path, method) in extra {
            add(path, method);
        }
        let rank = |m: &String| {
            let order = [
                "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
            ];
            order.iter().position(|o| o == m).unwrap_or(order.len())
        };
        for (_, methods) in &mut routes {
            methods.sort_by_key(rank);
        }
        Routes(routes)
    }

    /// The methods a path answers, when it matches a route (`{x}` matches any segment).
    pub fn allowed(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split('/').collect();
        self.0
            .iter()
            .find(|(template, _)| {
                template.len() == segments.len()
                    && template
                        .iter()
                        .zip(&segments)
                        .all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s)
            })
            .map(|(_, methods)| methods.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undeclared_methods_find_their_path() {
        let doc = json!({"paths": {
            "/api/v1/documents/{id}": {"get": {}, "patch": {}, "delete": {}},
            "/healthz": {"get": {}},
        }});
        let routes = Routes::from_document(&doc, &[("/socket/websocket", "get")]);
        assert_eq!(
            routes.allowed("/api/v1/documents/12").as_deref(),
            Some("GET, PATCH, DELETE")
        );
        assert_eq!(routes.allowed("/healthz").as_deref(), Some("GET"));
        assert_eq!(routes.allowed("/socket/websocket").as_deref(), Some("GET"));
        assert_eq!(routes.allowed("/api/v1/documents/"), None);
        assert_eq!(routes.allowed("/api/v1/documents/1/x"), None);
        assert_eq!(routes.allowed("/nope"), None);
    }
}
