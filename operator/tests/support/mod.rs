//! An offline stand-in for the apiserver's CRD validation, so that unit tests prove each
//! rule in the generated schema really rejects what it should. It applies the schema's
//! defaults, checks the structural keywords relevo's CRDs use (type, required, unknown
//! fields, enum, pattern, lengths, ranges) and evaluates the CEL rules with kube-cel.
//! The real apiserver test (e2e) remains the judge; this catches mistakes at `cargo test`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

/// The openAPIV3Schema of a CRD's only version, as JSON.
pub fn schema_of(crd: &CustomResourceDefinition) -> Value {
    let schema = crd.spec.versions[0].schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref());
    serde_json::to_value(schema.expect("CRD has a schema")).unwrap()
}

/// Every error the apiserver would report, as "field.path: message".
pub fn admit(schema: &Value, object: &Value, old: Option<&Value>) -> Vec<String> {
    let defaulted = kube_cel::apply_defaults(schema, object);
    let mut errors = Vec::new();
    check(schema, &defaulted, "", &mut errors);
    if errors.is_empty() {
        // Like the apiserver, CEL only runs on a structurally valid object.
        if let Err(failures) = kube_cel::Validator::new().validate(schema, &defaulted, old) {
            errors.extend(failures.iter().map(|f| format!("{}: {}", f.field_path, f.message)));
        }
    }
    errors
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            errors.push(format!("{path}: must not be null"));
        }
        return;
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            errors.push(format!("{path}: must be an integer or a string"));
        }
        // A pattern applies to the string form only (quantities: `cpu: 2` or `cpu: 500m`).
        if let (Some(text), Some(pattern)) = (value.as_str(), schema.get("pattern").and_then(Value::as_str))
            && !regex::Regex::new(pattern).expect("schema pattern compiles").is_match(text)
        {
            errors.push(format!("{path}: should match '{pattern}'"));
        }
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: Unsupported value {value}"));
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => check_object(schema, value, path, errors),
        Some("array") => {
            let Some(items) = value.as_array() else {
                return errors.push(format!("{path}: must be of type array"));
            };
            bound(schema, "minItems", "maxItems", items.len(), path, errors);
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Some("string") => {
            let Some(text) = value.as_str() else {
                return errors.push(format!("{path}: must be of type string"));
            };
            bound(schema, "minLength", "maxLength", text.chars().count(), path, errors);
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
                && !regex::Regex::new(pattern).expect("schema pattern compiles").is_match(text)
            {
                errors.push(format!("{path}: should match '{pattern}'"));
            }
        }
        Some("integer") => match value.as_i64() {
            None => errors.push(format!("{path}: must be of type integer")),
            Some(n) => {
                // Bounds are emitted as floats ("maximum: 9.0"), values are integers.
                let n = n as f64;
                if schema.get("minimum").and_then(Value::as_f64).is_some_and(|min| n < min) {
                    errors.push(format!("{path}: should be greater than or equal to the minimum"));
                }
                if schema.get("maximum").and_then(Value::as_f64).is_some_and(|max| n > max) {
                    errors.push(format!("{path}: should be less than or equal to the maximum"));
                }
            }
        },
        Some("number") if !value.is_number() => errors.push(format!("{path}: must be of type number")),
        Some("boolean") if !value.is_boolean() => errors.push(format!("{path}: must be of type boolean")),
        _ => {}
    }
}

fn check_object(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(fields) = value.as_object() else {
        return errors.push(format!("{path}: must be of type object"));
    };
    bound(schema, "minProperties", "maxProperties", fields.len(), path, errors);
    for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        let name = required.as_str().unwrap();
        if !fields.contains_key(name) {
            errors.push(format!("{}: Required value", join(path, name)));
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    for (key, field) in fields {
        let field_path = join(path, key);
        // metadata is validated by the apiserver itself, not by the CRD schema.
        if path.is_empty() && ["metadata", "apiVersion", "kind"].contains(&key.as_str()) {
            continue;
        }
        match (properties.and_then(|p| p.get(key)), additional) {
            (Some(field_schema), _) => check(field_schema, field, &field_path, errors),
            (None, Some(Value::Object(_))) => check(additional.unwrap(), field, &field_path, errors),
            (None, Some(Value::Bool(true))) => {}
            _ if preserve => {}
            // kubectl's default strict field validation turns this into an error.
            _ => errors.push(format!("{field_path}: field not declared in schema")),
        }
    }
}

fn bound(schema: &Value, min_key: &str, max_key: &str, len: usize, path: &str, errors: &mut Vec<String>) {
    let len = len as u64;
    if schema.get(min_key).and_then(Value::as_u64).is_some_and(|min| len < min) {
        errors.push(format!("{path}: should have at least {min_key}"));
    }
    if schema.get(max_key).and_then(Value::as_u64).is_some_and(|max| len > max) {
        errors.push(format!("{path}: should have at most {max_key}"));
    }
}

/// A YAML manifest as JSON.
pub fn yaml_to_json(yaml: &str) -> Value {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("YAML does not parse: {e}\n{yaml}"))
}
