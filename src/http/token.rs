//! `--token-file`: the shared token, read from a file (a mounted Secret) and read again when the
//! file changes. The token is never logged, never put in a metric label and never compared in
//! a way whose time tells how much of it was right.
//!
//! The file may hold several tokens, one per line, each accepted: a rotation adds the new
//! token, moves the callers (the Operations' paths) to it, then removes the old one, and no
//! request fails in between.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::error::{Error, Result};

/// A file's identity and version: a Secret update swaps a symlink, so the inode changes; an
/// edit in place changes the size or the modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

pub(super) fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    Ok(Stamp {
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
        modified: meta.modified().ok(),
    })
}

/// What the deploy/ manifests hold until the operator puts a real token in.
pub const PLACEHOLDER: &str = "REPLACE_WITH_THE_TOKEN";

type Tokens = Arc<Vec<Vec<u8>>>;

struct Loaded {
    tokens: Tokens,
    stamp: Stamp,
    /// The last version that could not be used (logged once).
    failed: Option<Stamp>,
}

pub struct TokenFile {
    path: PathBuf,
    state: Mutex<Loaded>,
}

impl TokenFile {
    /// Reads the token; a missing, unreadable or empty file is a configuration error.
    pub fn load(path: &Path) -> Result<Self> {
        let problem =
            |what: String| Error::Config(format!("--token-file {}: {what}", path.display()));
        let stamp = stamp(path).map_err(|err| problem(err.to_string()))?;
        let tokens = read_tokens(path).map_err(problem)?;
        Ok(TokenFile {
            path: path.to_path_buf(),
            state: Mutex::new(Loaded {
                tokens,
                stamp,
                failed: None,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `presented` is one of the current tokens, in time that does not depend on
    /// the tokens (every one is compared, to its end).
    pub fn matches(&self, presented: &[u8]) -> bool {
        let tokens = self.current();
        tokens.iter().fold(false, |found, token| {
            constant_time_eq(token, presented) | found
        })
    }

    /// The tokens, read again first if the file changed. While the new version cannot be read
    /// (or holds no token), the last good tokens stay in force.
    fn current(&self) -> Tokens {
        let Ok(mut state) = self.state.lock() else {
            // A panic while holding the lock cannot happen here; refuse rather than guess.
            return Arc::new(Vec::new());
        };
        let now = match stamp(&self.path) {
            Ok(now) => now,
            Err(err) => {
                if state.failed.is_none() {
                    log::warn!(
                        "--token-file {}: {err}; the last token read stays in force",
                        self.path.display()
                    );
                    state.failed = Some(state.stamp.clone());
                }
                return state.tokens.clone();
            }
        };
        if now == state.stamp || state.failed.as_ref() == Some(&now) {
            return state.tokens.clone();
        }
        match read_tokens(&self.path) {
            Ok(tokens) => {
                log::info!(
                    "--token-file {}: changed, token reloaded ({} accepted)",
                    self.path.display(),
                    tokens.len()
                );
                *state = Loaded {
                    tokens,
                    stamp: now,
                    failed: None,
                };
            }
            Err(problem) => {
                log::warn!(
                    "--token-file {}: {problem}; the last token read stays in force",
                    self.path.display()
                );
                state.failed = Some(now);
            }
        }
        state.tokens.clone()
    }
}

/// The file's lines without surrounding whitespace (`echo` and editors add a newline), empty
/// lines left out; the manifests' placeholder is refused.
fn read_tokens(path: &Path) -> Result<Tokens, String> {
    let bytes = std::fs::read(path).map_err(|err| err.to_string())?;
    let tokens: Vec<Vec<u8>> = bytes
        .split(|b| *b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    if tokens.is_empty() {
        return Err("the file holds no token".to_string());
    }
    if tokens.iter().any(|t| t == PLACEHOLDER.as_bytes()) {
        return Err(format!(
            "the token is still the placeholder {PLACEHOLDER}: put a real token in the Secret"
        ));
    }
    Ok(Arc::new(tokens))
}

/// Compares in time that depends on the presented length only, never on where the first
/// difference is.
pub fn constant_time_eq(expected: &[u8], presented: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    let mut diff = (expected.len() ^ presented.len()) as u64;
    for (i, byte) in presented.iter().enumerate() {
        let wanted = expected.get(i % expected.len()).copied().unwrap_or(0);
        diff |= u64::from(wanted ^ byte);
    }
    std::hint::black_box(diff) == 0
}

/// `%XX` escapes of a query value decoded (a token may hold `+`, `/`, `=`); anything else is
/// taken as it is.
pub fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_whole_tokens_only() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret!"));
        assert!(!constant_time_eq(b"s3cret", b"s3cres"));
        assert!(!constant_time_eq(b"s3cret", b""));
        assert!(!constant_time_eq(b"", b""));
        // Same bytes repeated: the length still differs.
        assert!(!constant_time_eq(b"ab", b"abab"));
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("a%2Bb%3d%2F"), b"a+b=/");
        assert_eq!(percent_decode("100%"), b"100%");
        assert_eq!(percent_decode("%zz%4"), b"%zz%4");
        assert_eq!(percent_decode("plain"), b"plain");
    }

    #[test]
    fn reloads_when_the_file_changes_and_keeps_the_last_good_token() {
        let dir = std::env::temp_dir().join(format!("pdc-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let path = dir.join("token");
        std::fs::write(&path, "first\n").unwrap_or_default();
        let file = TokenFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(file.matches(b"first"));
        assert!(!file.matches(b"first\n"));
        // A Secret update: a new file renamed over the old one.
        let next = dir.join("token.new");
        std::fs::write(&next, "second").unwrap_or_default();
        std::fs::rename(&next, &path).unwrap_or_default();
        assert!(file.matches(b"second"));
        assert!(!file.matches(b"first"));
        // Emptied, then gone: the last good token stays.
        std::fs::write(&next, "").unwrap_or_default();
        std::fs::rename(&next, &path).unwrap_or_default();
        assert!(file.matches(b"second"));
        std::fs::remove_file(&path).unwrap_or_default();
        assert!(file.matches(b"second"));
        assert!(TokenFile::load(&path).is_err());
        std::fs::write(&path, " \n").unwrap_or_default();
        assert!(TokenFile::load(&path).is_err());
        std::fs::write(&path, format!("{PLACEHOLDER}\n")).unwrap_or_default();
        assert!(TokenFile::load(&path).is_err());
        // Two tokens during a rotation: both accepted.
        std::fs::write(&path, "old\n\nnew\n").unwrap_or_default();
        let file = TokenFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(file.matches(b"old") && file.matches(b"new"));
        assert!(!file.matches(b"old\nnew") && !file.matches(b""));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
