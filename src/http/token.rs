//! `--token-file`: the shared token, read from a file (a mounted Secret) and read again when the
//! file changes. The token is never logged, never put in a metric label and never compared in
//! a way whose time tells how much of it was right.

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

struct Loaded {
    token: Arc<[u8]>,
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
        let token = read_token(path).map_err(problem)?;
        Ok(TokenFile {
            path: path.to_path_buf(),
            state: Mutex::new(Loaded {
                token,
                stamp,
                failed: None,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `presented` is the current token, in time that does not depend on the token.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let token = self.current();
        constant_time_eq(&token, presented)
    }

    /// The token, read again first if the file changed. While the new version cannot be read
    /// (or is empty), the last good token stays in force.
    fn current(&self) -> Arc<[u8]> {
        let Ok(mut state) = self.state.lock() else {
            // A panic while holding the lock cannot happen here; refuse rather than guess.
            return Arc::from(Vec::new());
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
                return state.token.clone();
            }
        };
        if now == state.stamp || state.failed.as_ref() == Some(&now) {
            return state.token.clone();
        }
        match read_token(&self.path) {
            Ok(token) => {
                log::info!(
                    "--token-file {}: changed, token reloaded",
                    self.path.display()
                );
                *state = Loaded {
                    token,
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
        state.token.clone()
    }
}

/// The file's content without surrounding whitespace (`echo` and editors add a newline).
fn read_token(path: &Path) -> Result<Arc<[u8]>, String> {
    let bytes = std::fs::read(path).map_err(|err| err.to_string())?;
    let token = bytes.trim_ascii();
    if token.is_empty() {
        return Err("the file is empty".to_string());
    }
    Ok(Arc::from(token))
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
        let _ = std::fs::remove_dir_all(&dir);
    }
}
