//! Redaction of credentials in command lines: pure functions, no I/O.
//!
//! Environment values are redacted wholesale (`rebuild`); command lines cannot be, because the
//! command is what an operator most needs to see. So only the *values* that look like
//! credentials are replaced with [`REDACTED`]:
//!
//! 1. **Flags whose name looks like a credential**, as `--name=value`, `-name=value`,
//!    `--name value` (the next argument, unless it starts with `-`) and `NAME=value`
//!    (environment style, e.g. in `sh -c "export DB_PASSWORD=… && …"`). The name is split into
//!    words at `-`, `_` and `.` (case-insensitive); it looks like a credential when
//!    - a word is one of `password`, `passwd`, `passphrase`, `pass`, `pwd`, `secret`, `secrets`,
//!      `token`, `tokens`, `credential`, `credentials`, `creds`, `apikey`, `accesskey`,
//!      `secretkey`, `privatekey`, or
//!    - its **last** word is `key` (`--client-key`, `--api-key`, `--key`; not `--key-usage`),
//!
//!    and its last word does not say the value is *about* the credential rather than the
//!    credential: `file`, `files`, `path`, `dir`, `directory`, `stdin`, `ttl`, `timeout`,
//!    `expiration`, `length` (`--token-auth-file`, `--password-stdin`, `--key-file`).
//! 2. **URL passwords**: `scheme://user:password@host` keeps the user, loses the password.
//! 3. **Authorization headers**: `Authorization: Bearer abc` (as curl's `-H` takes it) loses
//!    the credential after the scheme.
//!
//! A value is kept, even after such a name, when it cannot be the secret itself: empty,
//! `true`/`false`, a reference to a variable (`$(API_TOKEN)`, `$TOKEN`, `${TOKEN}`), or a
//! file path — an absolute or relative path whose last part has an extension
//! (`--kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key`). A path to a key
//! is not a secret; the key is.
//!
//! Not redacted: single-letter flags (`-p` is mysql's password but most programs' port, so
//! `-p secret` and `-psecret` stay as they are), positional arguments, and values of flags
//! whose names say nothing (`--config`, `--dsn` without a URL password). Inside one argument
//! that holds a whole shell command (`sh -c "… --token=abc …"`), words are split at unquoted
//! whitespace, so the same rules apply to each word; a quoted word is read inside its quotes
//! (Docker's `Command` of a listed container quotes the script), and shell separators stuck to
//! a value (`DB_PASSWORD=x;`) are kept out of it.

use k8s_openapi::api::core::v1::PodSpec;
use serde_json::Value;

/// The text that stands in for a redacted value (environment values and credentials).
pub const REDACTED: &str = "<redacted>";

/// Words that make a flag name look like a credential wherever they appear in it.
const CREDENTIAL_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pass",
    "pwd",
    "secret",
    "secrets",
    "token",
    "tokens",
    "credential",
    "credentials",
    "creds",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
];

/// A last word that makes the value a description of the credential, not the credential.
const NOT_THE_CREDENTIAL: &[&str] = &[
    "file",
    "files",
    "path",
    "dir",
    "directory",
    "stdin",
    "ttl",
    "timeout",
    "expiration",
    "length",
];

/// Redacts credential values in an argument vector (a container's `command` or `args`).
pub fn redact_args(args: &mut [String]) {
    let mut value_follows = false;
    for arg in args.iter_mut() {
        if std::mem::take(&mut value_follows) && !arg.starts_with('-') && !keeps_value(arg) {
            *arg = REDACTED.to_string();
            continue;
        }
        let (redacted, flag_without_value) = redact_words(arg);
        // `--password secret`: only when the flag is the whole argument. A shell command in
        // one argument that ends with a flag is followed by the shell's own arguments.
        value_follows = flag_without_value && words(&redacted).len() == 1;
        *arg = redacted;
    }
}

/// Redacts credential values in one command line (Docker's `Command` of a listed container).
pub fn redact_command_line(line: &str) -> String {
    redact_words(line).0
}

/// Redacts `command` and `args` of every container, init container and ephemeral container.
pub fn redact_pod_spec(spec: &mut PodSpec) {
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
        .flat_map(|c| [c.command.as_mut(), c.args.as_mut()]);
    let ephemeral = spec
        .ephemeral_containers
        .iter_mut()
        .flatten()
        .flat_map(|c| [c.command.as_mut(), c.args.as_mut()]);
    for list in containers.chain(ephemeral).flatten() {
        redact_args(list);
    }
}

/// Redacts `command` and `args` of one container of a JSON object (the pod spec in kubectl's
/// `last-applied-configuration`). Entries that are not strings count as words but stay as
/// they are.
pub fn redact_container_value(container: &mut Value) {
    for key in ["command", "args"] {
        let Some(Value::Array(items)) = container.get_mut(key) else {
            continue;
        };
        let mut args: Vec<String> = items
            .iter()
            .map(|item| match item {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .collect();
        redact_args(&mut args);
        for (item, arg) in items.iter_mut().zip(args) {
            if item.is_string() {
                *item = Value::String(arg);
            }
        }
    }
}

/// kubectl's `last-applied-configuration` (a JSON object) with the environment values and the
/// command-line credentials of its containers redacted; `None` when it is not such an object
/// (then it cannot be shown safely).
pub fn redact_applied_configuration(applied: &str) -> Option<String> {
    let mut object: Value = serde_json::from_str(applied).ok()?;
    let spec = object.get_mut("spec").filter(|spec| spec.is_object())?;
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        let containers = spec.get_mut(list).and_then(Value::as_array_mut);
        for container in containers.into_iter().flatten() {
            let vars = container.get_mut("env").and_then(Value::as_array_mut);
            for var in vars.into_iter().flatten() {
                if let Some(value) = var.get_mut("value").filter(|v| v.is_string()) {
                    *value = Value::String(REDACTED.to_string());
                }
            }
            redact_container_value(container);
        }
    }
    serde_json::to_string(&object).ok()
}

/// How deep quoted shell code inside quoted shell code is read (`sh -c 'su -c "…"'`).
const MAX_QUOTE_DEPTH: usize = 3;

/// One string, word by word. Also says whether its last word is a credential flag without a
/// value (whose value is then the next argument).
fn redact_words(text: &str) -> (String, bool) {
    redact_words_within(text, 0)
}

fn redact_words_within(text: &str, depth: usize) -> (String, bool) {
    let spans = words(text);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut value_follows = false;
    for (index, &(start, end)) in spans.iter().enumerate() {
        let word = &text[start..end];
        if std::mem::take(&mut value_follows) {
            let value = shell_value(word);
            if !word.starts_with('-') && !value.is_empty() && !keeps_value(value) {
                out.push_str(&text[copied..start]);
                out.push_str(REDACTED);
                copied = start + value.len();
            }
            continue;
        }
        match flag(word) {
            Some(Flag {
                name,
                value: Some(value_at),
            }) if is_credential(name) && !keeps_value(shell_value(&word[value_at..])) => {
                out.push_str(&text[copied..start + value_at]);
                out.push_str(REDACTED);
                copied = start + value_at + shell_value(&word[value_at..]).len();
            }
            Some(Flag { name, value: None }) if is_credential(name) => {
                value_follows = true;
                if index + 1 == spans.len() {
                    break;
                }
            }
            // A quoted word (or a quoted value of another flag) may be shell code of its own,
            // as Docker shows `sh -c '… --token=x'`: read inside the quotes.
            other if depth < MAX_QUOTE_DEPTH => {
                let from = other.and_then(|f| f.value).unwrap_or(0);
                if let Some((inner_start, inner_end)) = quoted_inside(word, from) {
                    let inner = &word[inner_start..inner_end];
                    let (redacted, _) = redact_words_within(inner, depth + 1);
                    if redacted != inner {
                        out.push_str(&text[copied..start + inner_start]);
                        out.push_str(&redacted);
                        copied = start + inner_end;
                    }
                }
            }
            _ => {}
        }
    }
    out.push_str(&text[copied..]);
    let out = redact_authorization(&redact_url_passwords(&out));
    (out, value_follows)
}

/// A value without the shell separators stuck to its end (`DB_PASSWORD=x;`, `--token x&&`),
/// which are kept: they are not part of the secret.
fn shell_value(value: &str) -> &str {
    value.trim_end_matches([';', '&', '|'])
}

/// Where the text between the quotes of `word[from..]` is, when that part is one quoted string.
fn quoted_inside(word: &str, from: usize) -> Option<(usize, usize)> {
    let part = word.get(from..)?;
    let quote = part.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    (part.len() >= 2 && part.ends_with(quote)).then_some((from + 1, word.len() - 1))
}

/// A word that names a flag: its name and, for `name=value`, where the value starts.
struct Flag<'a> {
    name: &'a str,
    value: Option<usize>,
}

fn flag(word: &str) -> Option<Flag<'_>> {
    let stripped = word.trim_start_matches('-');
    let dashes = word.len() - stripped.len();
    let (name, value) = match stripped.split_once('=') {
        Some((name, _)) => (name, Some(dashes + name.len() + 1)),
        None => (stripped, None),
    };
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !name_ok {
        return None;
    }
    match dashes {
        // `NAME=value`, environment style: a name that starts like an identifier.
        0 => (value.is_some() && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
            .then_some(Flag { name, value }),
        // `-p`: single-letter flags mean something else in every program.
        1 if name.len() == 1 => None,
        _ => Some(Flag { name, value }),
    }
}

fn is_credential(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let words: Vec<&str> = name
        .split(['-', '_', '.'])
        .filter(|w| !w.is_empty())
        .collect();
    let Some(last) = words.last() else {
        return false;
    };
    if NOT_THE_CREDENTIAL.contains(last) {
        return false;
    }
    *last == "key" || words.iter().any(|w| CREDENTIAL_WORDS.contains(w))
}

/// Values that cannot be the secret itself, so are shown after a credential-looking name.
fn keeps_value(value: &str) -> bool {
    let value = unquote(value);
    if value.is_empty() || value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false")
    {
        return true;
    }
    is_variable(value) || is_file_path(value)
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

/// `$(NAME)` (Kubernetes' own reference, in last-applied), `$NAME`, `${NAME}`.
fn is_variable(value: &str) -> bool {
    let Some(rest) = value.strip_prefix('$') else {
        return false;
    };
    let name = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .or_else(|| rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')))
        .unwrap_or(rest);
    !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `/etc/kubernetes/pki/apiserver.key`, `./certs/tls.key`, `~/.ssh/id_ed25519.pub`: a path
/// whose last part has an extension. Base64 and hex secrets never hold a `.`, JWTs never a `/`.
fn is_file_path(value: &str) -> bool {
    let rooted = ["/", "./", "../", "~/"]
        .iter()
        .any(|prefix| value.starts_with(prefix));
    let chars_ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'~'));
    let last = value.rsplit('/').next().unwrap_or_default();
    rooted
        && chars_ok
        && last
            .trim_start_matches('.')
            .split_once('.')
            .is_some_and(|(stem, ext)| !stem.is_empty() && !ext.is_empty())
}

/// Byte spans of the words of `text`: split at whitespace outside single or double quotes
/// (a backslash escapes the next character outside single quotes).
fn words(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start: Option<usize> = None;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match quote {
            Some(q) if c == q => quote = None,
            Some('"') if c == '\\' => escaped = true,
            Some(_) => {}
            None if c.is_whitespace() => {
                if let Some(s) = start.take() {
                    spans.push((s, at));
                }
                continue;
            }
            None if c == '\\' => escaped = true,
            None if c == '\'' || c == '"' => quote = Some(c),
            None => {}
        }
        start.get_or_insert(at);
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    spans
}

/// `scheme://user:password@host…` → `scheme://user:<redacted>@host…`.
fn redact_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let authority_start = at + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let authority_len = after
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..authority_len];
        match authority.rfind('@').and_then(|user_end| {
            let colon = authority[..user_end].find(':')?;
            Some((colon, user_end))
        }) {
            Some((colon, user_end)) if user_end > colon + 1 => {
                out.push_str(&authority[..=colon]);
                out.push_str(REDACTED);
                out.push_str(&authority[user_end..]);
            }
            _ => out.push_str(authority),
        }
        rest = &after[authority_len..];
    }
    out.push_str(rest);
    out
}

/// Authorization schemes whose credential follows as one word.
const AUTH_SCHEMES: &[&str] = &["bearer", "basic", "token", "digest", "negotiate", "apikey"];

/// `Authorization: Bearer abc` → `Authorization: Bearer <redacted>` (any case, any scheme).
fn redact_authorization(text: &str) -> String {
    const HEADER: &str = "authorization:";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find(HEADER) {
        let mut at = search + found + HEADER.len();
        let skip_spaces = |at: usize| {
            at + text[at..]
                .find(|c: char| c != ' ' && c != '\t')
                .unwrap_or(text.len() - at)
        };
        at = skip_spaces(at);
        let word_end = |at: usize| {
            at + text[at..]
                .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
                .unwrap_or(text.len() - at)
        };
        let first_end = word_end(at);
        if AUTH_SCHEMES.contains(&&lower[at..first_end]) {
            at = skip_spaces(first_end);
        }
        let end = word_end(at);
        if end > at && &text[at..end] != REDACTED {
            out.push_str(&text[copied..at]);
            out.push_str(REDACTED);
            copied = end;
        }
        search = end.max(search + found + HEADER.len());
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        redact_args(&mut args);
        args
    }

    #[test]
    fn credential_flags_lose_their_values() {
        for (given, expected) in [
            ("--password=hunter2", "--password=<redacted>"),
            ("--PASSWORD=hunter2", "--PASSWORD=<redacted>"),
            ("--db-password=x", "--db-password=<redacted>"),
            ("--db_token=x", "--db_token=<redacted>"),
            ("--token=abc", "--token=<redacted>"),
            ("--bootstrap-token=abc.def", "--bootstrap-token=<redacted>"),
            ("--secret=x", "--secret=<redacted>"),
            ("--client-secret=x", "--client-secret=<redacted>"),
            ("--secret-key=x", "--secret-key=<redacted>"),
            ("--api-key=x", "--api-key=<redacted>"),
            ("--apikey=x", "--apikey=<redacted>"),
            ("--key=x", "--key=<redacted>"),
            ("--encryption-key=c2VjcmV0", "--encryption-key=<redacted>"),
            ("--credentials=user:pw", "--credentials=<redacted>"),
            ("--passphrase=x", "--passphrase=<redacted>"),
            ("--auth.token=x", "--auth.token=<redacted>"),
            ("-token=abc", "-token=<redacted>"),
            ("--token=", "--token="),
            ("--password='a b'", "--password=<redacted>"),
            ("DB_PASSWORD=x", "DB_PASSWORD=<redacted>"),
            ("auth.password=x", "auth.password=<redacted>"),
        ] {
            assert_eq!(args(&[given]), [expected], "{given}");
        }
    }

    #[test]
    fn a_credential_flag_takes_the_next_argument_as_its_value() {
        assert_eq!(
            args(&["app", "--password", "hunter2", "--port", "80"]),
            ["app", "--password", "<redacted>", "--port", "80"]
        );
        assert_eq!(
            args(&["--token", "a b c", "x"]),
            ["--token", "<redacted>", "x"]
        );
        // The next argument is another flag: nothing to redact.
        assert_eq!(args(&["--token", "--verbose"]), ["--token", "--verbose"]);
        // Last argument: nothing follows.
        assert_eq!(args(&["--token"]), ["--token"]);
    }

    #[test]
    fn what_is_not_a_credential_is_shown() {
        for kept in [
            // Paths to key files are not secrets; the keys are.
            "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key",
            "--key-file=/etc/tls/tls.key",
            "--token-auth-file=/etc/kubernetes/tokens.csv",
            "--password-file=/run/secrets/db",
            "--service-account-key-file=/etc/kubernetes/pki/sa.pub",
            "--kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key",
            "--client-key=./certs/client.key",
            "--secret-dir=/var/run/secrets",
            // About the credential, not the credential.
            "--bootstrap-token-ttl=24h",
            "--min-password-length=8",
            "--key-usage=digitalSignature",
            "--enable-bootstrap-token-auth=true",
            "--password-stdin",
            // References, not values.
            "--token=$(API_TOKEN)",
            "--token=${API_TOKEN}",
            "--password=$DB_PASSWORD",
            // Names that say nothing.
            "--tls-cert-file=/etc/tls/tls.crt",
            "--config=/etc/app.yaml",
            "--keyring=default",
            "--authorization-mode=Node,RBAC",
            "--port=8080",
            "--monkey=banana",
            "--tokenizer=bert",
            // Single-letter flags: `-p` is a port as often as a password.
            "-p=3306",
            "-psecret",
            "positional",
            "sha256:0123abcd",
        ] {
            assert_eq!(args(&[kept]), [kept], "{kept}");
        }
        assert_eq!(
            args(&["mysql", "-p", "secret", "-u", "root"]),
            ["mysql", "-p", "secret", "-u", "root"]
        );
        assert_eq!(
            args(&[
                "docker",
                "login",
                "--password-stdin",
                "registry.example.com"
            ]),
            [
                "docker",
                "login",
                "--password-stdin",
                "registry.example.com"
            ]
        );
        assert_eq!(
            args(&["--key", "/etc/tls/tls.key"]),
            ["--key", "/etc/tls/tls.key"]
        );
        // A path without an extension could be base64: it is redacted.
        assert_eq!(args(&["--key=/abc/def"]), ["--key=<redacted>"]);
    }

    #[test]
    fn shell_commands_in_one_argument_are_read_word_by_word() {
        assert_eq!(
            args(&[
                "sh",
                "-c",
                "export DB_PASSWORD=hunter2 && exec /app --token abc --name 'my app' --secret=\"x y\""
            ]),
            [
                "sh",
                "-c",
                "export DB_PASSWORD=<redacted> && exec /app --token <redacted> --name 'my app' --secret=<redacted>"
            ]
        );
        // A shell command that ends with a flag does not take the shell's next argument.
        assert_eq!(
            args(&["sh", "-c", "exec app --token", "--token"]),
            ["sh", "-c", "exec app --token", "--token"]
        );
        assert_eq!(
            redact_command_line("/app --password hunter2 --port 80"),
            "/app --password <redacted> --port 80"
        );
        // Docker's Command of a listed container quotes the script; quotes in quotes too.
        assert_eq!(
            redact_command_line(
                "sh -c 'export DB_PASSWORD=x; su app -c \"run --token y\"' --cmd='a --secret=z'"
            ),
            "sh -c 'export DB_PASSWORD=<redacted>; su app -c \"run --token <redacted>\"' --cmd='a --secret=<redacted>'"
        );
    }

    #[test]
    fn url_passwords_and_authorization_headers_are_redacted() {
        assert_eq!(
            args(&["--db=postgres://app:hunter2@db:5432/x?sslmode=disable"]),
            ["--db=postgres://app:<redacted>@db:5432/x?sslmode=disable"]
        );
        assert_eq!(
            args(&["https://user@example.com/", "http://example.com:8080/"]),
            ["https://user@example.com/", "http://example.com:8080/"]
        );
        assert_eq!(
            args(&["curl", "-H", "Authorization: Bearer abc.def", "http://x"]),
            ["curl", "-H", "Authorization: Bearer <redacted>", "http://x"]
        );
        assert_eq!(
            redact_command_line("curl -H 'authorization: Basic dXNlcjpwdw==' http://x"),
            "curl -H 'authorization: Basic <redacted>' http://x"
        );
        assert_eq!(
            redact_command_line("x --header=Authorization:abc"),
            "x --header=Authorization:<redacted>"
        );
    }

    #[test]
    fn odd_input_does_not_panic() {
        for text in [
            "",
            " ",
            "--",
            "-",
            "=",
            "--=x",
            "'",
            "\"",
            "\\",
            "--password='unterminated",
            "--token=\"a\\\"b\"",
            "://",
            "a://:@",
            "authorization:",
            "Authorization: Bearer",
            "--pässword=ü",
            "ünïcode --token=ß ∂",
        ] {
            let mut list = vec![text.to_string(), text.to_string()];
            redact_args(&mut list);
            let _ = redact_command_line(text);
        }
        assert_eq!(args(&["--token=ß"]), ["--token=<redacted>"]);
    }

    #[test]
    fn applied_configuration_loses_env_values_and_credential_flags() {
        let applied = r#"{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"a","command":["/app","--token=abc"],"args":["--password","hunter2",3],"env":[{"name":"TOKEN","value":"s3cret"}]}],"initContainers":[{"name":"i","args":["--api-key=k"]}]}}"#;
        let redacted = redact_applied_configuration(applied).unwrap_or_default();
        for secret in ["abc", "s3cret", "hunter2", "\"k\""] {
            assert!(!redacted.contains(secret), "{secret}: {redacted}");
        }
        assert!(
            redacted.contains(r#""--password","<redacted>",3"#),
            "{redacted}"
        );
        assert!(redacted.contains("--token=<redacted>"), "{redacted}");
        assert!(redact_applied_configuration("not json").is_none());
        assert!(redact_applied_configuration(r#"{"spec":1}"#).is_none());
    }
}
