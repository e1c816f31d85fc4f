//! 1.K Secrets and credentials, and the classifiers the adapters call while reading
//! environment variables and arguments. Values are classified and dropped: evidence shows the
//! variable name and the rule that matched, never the value (E18).

use super::{s, Eval};
use crate::posture::catalog::CheckId;
use crate::posture::spec::{EnvKind, Pointer, SecretHit, Val, VolumeSource};
use crate::posture::Outcome;

pub(crate) fn run(e: &mut Eval<'_, '_, '_>) {
    env_literal(e);
    env_secret_ref(e);
    token_automount(e);
}

/// Sensitive words matched as whole name segments (split at `_`, `-`, `.`).
const NAME_WORDS: &[&str] = &[
    "password",
    "passwords",
    "passwd",
    "pwd",
    "secret",
    "secrets",
    "token",
    "tokens",
    "bearer",
    "jwt",
    "credential",
    "credentials",
    "apikey",
    "accesskey",
    "privatekey",
    "secretkey",
];

/// Adjacent segments that name a key (`API_KEY`, `ACCESS-KEY`, `PRIVATE_KEY`).
const NAME_PAIRS: &[(&str, &str)] = &[("api", "key"), ("access", "key"), ("private", "key")];

/// Why `name` looks like a secret's name, if it does.
pub fn sensitive_name(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    if lower == "oci_cli_key_content" {
        return Some("name is OCI_CLI_KEY_CONTENT");
    }
    let segments: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|s| !s.is_empty())
        .collect();
    if segments.first() == Some(&"azure") && segments.last().is_some_and(|s| s.ends_with("key")) {
        return Some("name matches AZURE_*KEY");
    }
    for segment in &segments {
        if let Some(word) = NAME_WORDS.iter().find(|w| *w == segment) {
            return Some(match *word {
                "password" | "passwords" => "name contains \"password\"",
                "passwd" => "name contains \"passwd\"",
                "pwd" => "name contains \"pwd\"",
                "secret" | "secrets" | "secretkey" => "name contains \"secret\"",
                "token" | "tokens" => "name contains \"token\"",
                "bearer" => "name contains \"bearer\"",
                "jwt" => "name contains \"jwt\"",
                "credential" | "credentials" => "name contains \"credential\"",
                "apikey" => "name contains \"api key\"",
                "accesskey" => "name contains \"access key\"",
                _ => "name contains \"private key\"",
            });
        }
        // Compound words: DBPASSWORD, GITHUBTOKEN, CLIENTSECRET.
        if segment.len() > 8 && (segment.contains("password") || segment.contains("passwd")) {
            return Some("name contains \"password\"");
        }
        if segment.len() > 6 && (segment.ends_with("secret") || segment.ends_with("token")) {
            return Some(if segment.ends_with("secret") {
                "name contains \"secret\""
            } else {
                "name contains \"token\""
            });
        }
    }
    for pair in segments.windows(2) {
        if let Some((first, _)) = NAME_PAIRS
            .iter()
            .find(|(a, b)| pair[0] == *a && pair[1] == *b)
        {
            return Some(match *first {
                "api" => "name contains \"api key\"",
                "access" => "name contains \"access key\"",
                _ => "name contains \"private key\"",
            });
        }
    }
    None
}

/// Whether a value is a reference rather than a secret: a file path, or an unexpanded
/// `$(VAR)` / `${VAR}` / `$VAR`.
fn is_reference(value: &str) -> bool {
    let value = value.trim();
    value.starts_with('/')
        || (value.starts_with('$') && !value.contains(char::is_whitespace))
        || value.starts_with("file:")
}

/// Classifies one environment variable: `Some` when it holds a literal secret.
pub fn classify_env(name: &str, value: &str) -> Option<SecretHit> {
    if value.trim().is_empty() {
        return None;
    }
    if let Some(rule) = token_in(value) {
        return Some(SecretHit {
            rule,
            by_value: true,
        });
    }
    if is_reference(value) {
        return None;
    }
    sensitive_name(name).map(|rule| SecretHit {
        rule,
        by_value: false,
    })
}

fn run_of(bytes: &[u8], from: usize, ok: impl Fn(u8) -> bool) -> usize {
    bytes[from..].iter().take_while(|b| ok(**b)).count()
}

/// The name of a high-confidence token pattern found in `text`, if any.
pub fn token_in(text: &str) -> Option<&'static str> {
    let bytes = text.as_bytes();
    if text.contains("-----BEGIN ") && text.contains("PRIVATE KEY-----") {
        return Some("private key block");
    }
    let upper_digit = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit();
    let alnum = |b: u8| b.is_ascii_alphanumeric();
    let url64 = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    for (index, _) in text.char_indices() {
        let rest = &bytes[index..];
        let boundary = index == 0 || !bytes[index - 1].is_ascii_alphanumeric();
        if !boundary {
            continue;
        }
        if (rest.starts_with(b"AKIA") || rest.starts_with(b"ASIA"))
            && run_of(bytes, index + 4, upper_digit) >= 16
        {
            return Some("AWS access key id");
        }
        for prefix in [&b"ghp_"[..], b"gho_", b"ghu_", b"ghs_", b"ghr_"] {
            if rest.starts_with(prefix) && run_of(bytes, index + 4, alnum) >= 36 {
                return Some("GitHub token");
            }
        }
        if rest.starts_with(b"github_pat_") && run_of(bytes, index + 11, url64) >= 22 {
            return Some("GitHub token");
        }
        if rest.len() > 5
            && rest.starts_with(b"xox")
            && matches!(rest[3], b'b' | b'a' | b'p' | b'r' | b's')
            && rest[4] == b'-'
            && run_of(bytes, index + 5, url64) >= 10
        {
            return Some("Slack token");
        }
        if rest.starts_with(b"AIza") && run_of(bytes, index + 4, url64) >= 35 {
            return Some("Google API key");
        }
        if rest.starts_with(b"eyJ") {
            let first = run_of(bytes, index, url64);
            let second_at = index + first;
            if bytes.get(second_at) == Some(&b'.') && bytes[second_at + 1..].starts_with(b"eyJ") {
                let second = run_of(bytes, second_at + 1, url64);
                if first >= 10 && second >= 10 && bytes.get(second_at + 1 + second) == Some(&b'.') {
                    return Some("JSON Web Token");
                }
            }
        }
    }
    None
}

/// Whether a command element runs `sudo` (as a word, not inside `pseudo`).
pub fn mentions_sudo(text: &str) -> bool {
    text.split(|c: char| {
        c.is_whitespace() || matches!(c, ';' | '|' | '&' | '(' | ')' | '\'' | '"' | '`')
    })
    .any(|token| token == "sudo" || token.ends_with("/sudo"))
}

fn env_literal(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::SecretsEnvLiteral;
    let spec = e.spec;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        let image_env = e
            .ctx
            .images
            .and_then(|images| c.image_id.as_deref().and_then(|id| images.get(id)))
            .map(|image| &image.env_names);
        let mut found = false;
        let mut from_image = false;
        for var in &c.env {
            if let EnvKind::Literal { secret: Some(hit) } = &var.kind {
                found = true;
                from_image |= image_env.is_some_and(|names| names.iter().any(|n| *n == *var.name));
                let pointer = spec
                    .pointer(Some(c), c.env_src)
                    .index(var.index)
                    .tail(c.env_name_tail);
                e.out.ev(pointer, s(&var.name), Val::Str(hit.rule));
            }
        }
        for hit in &c.arg_secrets {
            found = true;
            e.out.ev(spec.pointer(Some(c), hit.src), Val::Str("[redacted]"), Val::Str(hit.what));
        }
        if found {
            let message = if from_image {
                "a secret value is baked into the image's ENV (build stage) and visible in the environment"
            } else {
                "a secret value is set as a literal environment variable or argument"
            };
            e.outcome(check, Some(c), Outcome::Fail, message, start);
        } else {
            e.out.ev(spec.pointer(Some(c), c.env_src), Val::Int(c.env.len() as i64), Val::Str("no literal secret"));
            e.outcome(check, Some(c), Outcome::Pass, "no literal secret in the environment", start);
        }
    });
}

fn env_secret_ref(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::SecretsEnvSecretRef;
    if !e.applies(check) {
        return;
    }
    let spec = e.spec;
    e.each_container(check, |e, c| {
        let start = e.out.mark();
        let mut found = false;
        for var in c.env.iter().filter(|v| v.kind == EnvKind::SecretRef) {
            found = true;
            let pointer = spec
                .pointer(Some(c), c.env_src)
                .index(var.index)
                .tail("/valueFrom/secretKeyRef");
            e.out.ev(pointer, s(&var.name), Val::Str("secretKeyRef"));
        }
        for index in &c.env_from_secrets {
            found = true;
            let pointer = Pointer::item(&c.ptr)
                .path("/envFrom")
                .index(*index)
                .tail("/secretRef");
            e.out
                .ev(pointer, Val::Str("secretRef"), Val::Str("secretRef"));
        }
        if found {
            e.outcome(
                check,
                Some(c),
                Outcome::Fail,
                "a Secret is injected as environment variables",
                start,
            );
        } else {
            e.out.ev(
                spec.pointer(Some(c), c.env_src),
                Val::Absent,
                Val::Str("no secret reference"),
            );
            e.outcome(
                check,
                Some(c),
                Outcome::Pass,
                "no Secret injected as environment variables",
                start,
            );
        }
    });
}

fn token_automount(e: &mut Eval<'_, '_, '_>) {
    let check = CheckId::SaTokenAutomount;
    if !e.applies(check) {
        return;
    }
    let spec = e.spec;
    let start = e.out.mark();
    let pod = &spec.pod.automount_sa_token;
    let account = spec.pod.service_account.as_deref().unwrap_or("default");
    let effective = match pod.value {
        Some(value) => {
            e.fld(None, pod, Val::Bool(value));
            Some(value)
        }
        None => {
            e.fld(None, pod, Val::Str("unset: the ServiceAccount decides"));
            let namespace = spec.namespace_or_default();
            let facts = e.ctx.service_accounts.map(|accounts| {
                accounts
                    .iter()
                    .find(|sa| sa.namespace == namespace && sa.name == account)
            });
            let injected = spec.volumes.iter().find(|v| {
                v.name.starts_with("kube-api-access-")
                    && matches!(
                        v.source,
                        VolumeSource::Projected {
                            service_account_token: true
                        }
                    )
            });
            match (facts, injected) {
                (Some(Some(sa)), _) => {
                    e.fld(None, &spec.pod.service_account, s(&sa.name));
                    Some(sa.automount_token.unwrap_or(true))
                }
                // A live Pod shows what admission did: the injected kube-api-access volume.
                (_, Some(volume)) if spec.live => {
                    e.out.ev(
                        Pointer::item(&volume.ptr),
                        s(&volume.name),
                        Val::Str("token mounted"),
                    );
                    Some(true)
                }
                (_, None) if spec.live => Some(false),
                _ => None,
            }
        }
    };
    let projected: Vec<_> = spec
        .volumes
        .iter()
        .filter(|v| {
            matches!(
                v.source,
                VolumeSource::Projected {
                    service_account_token: true
                }
            ) && !v.name.starts_with("kube-api-access-")
        })
        .collect();
    match effective {
        Some(true) => e.outcome(
            check,
            None,
            Outcome::Fail,
            "the ServiceAccount token is mounted automatically",
            start,
        ),
        Some(false) if !projected.is_empty() => {
            for volume in projected {
                e.out.ev(
                    Pointer::item(&volume.ptr).tail("/projected"),
                    s(&volume.name),
                    Val::Str("serviceAccountToken"),
                );
            }
            e.result(
                check,
                None,
                Outcome::Fail,
                crate::posture::catalog::Severity::Info,
                "automount is off, but a ServiceAccount token is projected explicitly",
                start,
            );
        }
        Some(false) => e.outcome(
            check,
            None,
            Outcome::Pass,
            "the ServiceAccount token is not mounted",
            start,
        ),
        None => e.outcome(
            check,
            None,
            Outcome::Unknown,
            "automountServiceAccountToken is unset and the ServiceAccount is not known",
            start,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_names_match_whole_words_not_substrings() {
        for name in [
            "DB_PASSWORD",
            "MYSQL_ROOT_PASSWORD",
            "PASSWD",
            "client-secret",
            "GITHUB_TOKEN",
            "API_KEY",
            "apiKey",
            "AWS_SECRET_ACCESS_KEY",
            "AZURE_STORAGE_KEY",
            "JWT_SIGNING",
            "DBPASSWORD",
            "SLACKTOKEN",
        ] {
            assert!(sensitive_name(name).is_some(), "{name}");
        }
        for name in [
            "KEYCLOAK_URL",
            "MONKEY",
            "TOKENIZER_PATH",
            "PATH",
            "HOSTNAME",
            "KEY_ID",
        ] {
            assert!(sensitive_name(name).is_none(), "{name}");
        }
    }

    #[test]
    fn references_and_paths_are_not_secrets() {
        assert!(classify_env("DB_PASSWORD_FILE", "/run/secrets/db").is_none());
        assert!(classify_env("DB_PASSWORD", "$(DB_PASSWORD_FROM_SECRET)").is_none());
        assert!(classify_env("DB_PASSWORD", "").is_none());
        assert!(classify_env("DB_PASSWORD", "hunter2").is_some());
        assert!(classify_env("PWD", "/app").is_none());
    }

    #[test]
    fn high_confidence_tokens_are_found_in_any_variable() {
        let aws = classify_env("CONFIG", "AKIAIOSFODNN7EXAMPLE").unwrap();
        assert_eq!((aws.rule, aws.by_value), ("AWS access key id", true));
        assert_eq!(
            token_in("--token=ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
            Some("GitHub token")
        );
        assert_eq!(token_in("xoxb-1234567890-abcdefghij"), Some("Slack token"));
        assert_eq!(
            token_in("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig"),
            Some("JSON Web Token")
        );
        assert_eq!(
            token_in("-----BEGIN RSA PRIVATE KEY-----\nMII..."),
            Some("private key block")
        );
        assert_eq!(token_in("just some text AKIA"), None);
    }

    #[test]
    fn sudo_is_found_as_a_word_only() {
        assert!(mentions_sudo("sudo -u app /app/run"));
        assert!(mentions_sudo("sh -c 'apt-get update && /usr/bin/sudo run'"));
        assert!(!mentions_sudo("pseudo-random"));
        assert!(!mentions_sudo("/app/sudoku"));
    }
}
