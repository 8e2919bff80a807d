//! Configured secrets are never printed.
//!
//! Which values are secret: every value from `${env:…}` (see `kafka::KafkaSettings`),
//! and every string value of a key named like a secret (`is_secret_key`). Config loading
//! registers them here (`register`); every log line (the writer of `init_logging`), the
//! error `main` prints, and config error messages pass through [`redact`], which replaces any
//! registered value with `***`. That also covers text we do not control, such as librdkafka's
//! error strings, which echo property values (`ssl.key.password …`).
//!
//! A process-wide registry rather than a value passed around: log lines are written from
//! everywhere, including librdkafka's callbacks, and a secret must not leak through any of them.

use std::borrow::Cow;
use std::sync::RwLock;

/// Shown instead of a secret value.
pub(crate) const MASK: &str = "***";

/// Values shorter than this are not registered: replacing every `ab` in every log line would
/// garble the logs without protecting anything worth the name of a secret.
pub(crate) const MIN_SECRET_LEN: usize = 4;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Key fragments that mark a value as secret (matched case-insensitively anywhere in the key,
/// e.g. `sasl.password`, `ssl.key.password`, `ssl.keystore.password`, `sasl.oauthbearer.client.secret`).
const SECRET_KEY_PARTS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "credential",
    "key",
    "sasl",
    "private",
];

/// Keys matched by [`SECRET_KEY_PARTS`] that only name a mechanism, never a secret: shown, so
/// that a log still says how the client authenticates.
const NOT_SECRET_KEYS: &[&str] = &["sasl.mechanism", "sasl.mechanisms"];

/// Whether a configuration key (a `[kafka.consumer]` property, or any config key) is named
/// like a secret.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    !NOT_SECRET_KEYS.contains(&k.as_str()) && SECRET_KEY_PARTS.iter().any(|p| k.contains(p))
}

/// Remembers a secret value: from now on [`redact`] hides it.
pub(crate) fn register(value: &str) {
    if value.len() < MIN_SECRET_LEN {
        return;
    }
    let mut s = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !s.iter().any(|v| v == value) {
        s.push(value.to_string());
        // Longest first, so a secret that contains another is masked whole.
        s.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// Whether values of this key are masked wherever they appear in text: secret-like keys
/// except user names. A user name (`sasl.username = "spikewatch"`) is hidden in the settings
/// dump, but masking it everywhere would turn every topic name and log target into `***`.
fn masked_everywhere(key: &str) -> bool {
    is_secret_key(key) && !key.to_ascii_lowercase().contains("user")
}

/// Registers every string value of a secret-like key in a TOML table (user names aside, see
/// `masked_everywhere`), at any depth: the key itself is checked, not the tables above it, so
/// `[kafka.consumer] "sasl.password"` and `[services.x] api_token` count and
/// `[services.monkey] direction` does not.
pub(crate) fn register_toml(table: &toml::Table) {
    fn walk(key: &str, v: &toml::Value) {
        match v {
            toml::Value::String(s) if masked_everywhere(key) => register(s),
            toml::Value::Table(t) => {
                for (k, v) in t {
                    walk(k, v);
                }
            }
            toml::Value::Array(a) => {
                for v in a {
                    walk(key, v);
                }
            }
            _ => {}
        }
    }
    for (k, v) in table {
        walk(k, v);
    }
}

/// `text` with every registered secret replaced by `MASK`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let s = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut out = Cow::Borrowed(text);
    for secret in s.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), MASK));
        }
    }
    out
}

/// The `tracing` writer of `init_logging`: stderr, with every line passed through [`redact`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The fmt layer formats a whole event, then writes it in one call.
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingStderr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_are_masked_and_short_ones_ignored() {
        register("s3cr3t-unit-canary");
        register("ab");
        let r = redact("password s3cr3t-unit-canary and ab");
        assert_eq!(r, "password *** and ab");
        assert!(matches!(redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn user_names_are_not_masked_in_every_line() {
        let t: toml::Table =
            "[kafka.consumer]\n\"sasl.username\" = \"user-unit-canary\"\n\"sasl.password\" = \"pw-unit-canary\"\n"
                .parse()
                .unwrap();
        register_toml(&t);
        assert_eq!(
            redact("user-unit-canary pw-unit-canary"),
            "user-unit-canary ***"
        );
    }

    #[test]
    fn secret_keys_are_recognised() {
        for k in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.username",
            "sasl.oauthbearer.client.secret",
            "SSL.KEY.PEM",
            "api_token",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "sasl.mechanisms",
            "security.protocol",
            "client.id",
            "brokers",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
