//! Removing secret values from raw documents before they are stored or shown.
//!
//! Environment variable values can hold passwords and tokens, so every value is replaced by
//! [`REDACTED`] (the names stay: they are evidence). Checks that need the values run on the
//! document before it is redacted.

use serde_json::Value;

/// What a removed value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Redacts a Docker inspect document (container or image): `Config.Env` / `ContainerConfig.Env`
/// entries keep their names only.
pub fn docker_inspect(doc: &mut Value) {
    for config in ["Config", "ContainerConfig"] {
        if let Some(env) = doc.get_mut(config).and_then(|c| c.get_mut("Env")) {
            redact_env_list(env);
        }
    }
}

/// `["KEY=value", …]` → `["KEY=[redacted]", …]`.
pub fn redact_env_list(env: &mut Value) {
    if let Some(items) = env.as_array_mut() {
        for item in items {
            if let Some(text) = item.as_str() {
                let name = text.split_once('=').map_or(text, |(name, _)| name);
                *item = Value::String(format!("{name}={REDACTED}"));
            }
        }
    }
}

/// Redacts a Kubernetes object of any kind: every container's literal `env[].value` (pod specs
/// wherever they nest: Pod, template, jobTemplate), the `data` / `stringData` of a Secret, and
/// the last-applied-configuration annotation, which repeats the whole object.
pub fn kubernetes_object(doc: &mut Value) {
    if doc.get("kind").and_then(Value::as_str) == Some("Secret") {
        for field in ["data", "stringData"] {
            if let Some(map) = doc.get_mut(field).and_then(Value::as_object_mut) {
                for value in map.values_mut() {
                    *value = Value::String(REDACTED.into());
                }
            }
        }
    }
    if let Some(annotations) = doc
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        if let Some(value) = annotations.get_mut("kubectl.kubernetes.io/last-applied-configuration")
        {
            *value = Value::String(REDACTED.into());
        }
    }
    redact_containers(doc);
}

fn redact_containers(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if matches!(
                    key.as_str(),
                    "containers" | "initContainers" | "ephemeralContainers"
                ) {
                    if let Some(containers) = child.as_array_mut() {
                        for container in containers {
                            if let Some(env) =
                                container.get_mut("env").and_then(Value::as_array_mut)
                            {
                                for var in env {
                                    if let Some(var) = var.as_object_mut() {
                                        if var.contains_key("value") {
                                            var.insert(
                                                "value".into(),
                                                Value::String(REDACTED.into()),
                                            );
                                        }
                                    }
                                }
                            }
                        }
                    }
                } else {
                    redact_containers(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_containers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn docker_env_values_are_removed_and_names_kept() {
        let mut doc = json!({"Config": {"Env": ["DB_PASSWORD=hunter2", "PATH=/bin", "EMPTY"]}});
        docker_inspect(&mut doc);
        assert_eq!(
            doc["Config"]["Env"],
            json!([
                "DB_PASSWORD=[redacted]",
                "PATH=[redacted]",
                "EMPTY=[redacted]"
            ])
        );
    }

    #[test]
    fn kubernetes_env_values_are_removed_at_any_depth() {
        let mut doc = json!({
            "kind": "CronJob",
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"token\":\"abc\"}"}},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {
                "initContainers": [{"name": "i", "env": [{"name": "TOKEN", "value": "abc"}]}],
                "containers": [{"name": "c", "env": [
                    {"name": "API_KEY", "value": "s3cr3t"},
                    {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
                ]}]
            }}}}}
        });
        kubernetes_object(&mut doc);
        let text = doc.to_string();
        assert!(!text.contains("s3cr3t") && !text.contains("abc"), "{text}");
        assert!(text.contains("API_KEY") && text.contains("secretKeyRef"));
    }

    #[test]
    fn secret_data_is_removed() {
        let mut doc = json!({"kind": "Secret", "data": {"password": "aHVudGVyMg=="}, "stringData": {"x": "y"}});
        kubernetes_object(&mut doc);
        assert_eq!(doc["data"]["password"], REDACTED);
        assert_eq!(doc["stringData"]["x"], REDACTED);
    }
}
