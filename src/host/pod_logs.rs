//! The tail of a container's log, as the kubelet reads it for `FallbackToLogsOnError`
//! (`readLastStringFromContainerLogs`): the last 80 lines of
//! `<pod-logs>/<ns>_<name>_<uid>/<container>/<restart>.log`, each line's text as the log
//! format holds it, of which the last 2048 bytes are kept. Both formats the kubelet reads:
//! the CRI format containerd and CRI-O write (`<time> <stream> <P|F> <text>`, `P` marking a
//! line the runtime split) and Docker's json-file lines (`{"log": "<text>\n", "stream": …,
//! "time": …}`), which the path links to on Docker nodes. Only the end of the file is read.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The kubelet's `MaxContainerTerminationMessageLogLines`.
pub const TAIL_LINES: usize = 80;
/// The kubelet's `MaxContainerTerminationMessageLogLength`.
pub const TAIL_BYTES: usize = 2048;
/// Most bytes read from the end: 80 lines of the runtimes' longest line (16 KiB) and more.
const READ_LIMIT: u64 = 2 * 1024 * 1024;
const BLOCK: u64 = 8 * 1024;

/// The tail the kubelet would show, or `None` when the log cannot be read.
pub fn tail(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path)
        .map_err(|err| log::debug!("container log {}: {err}", path.display()))
        .ok()?;
    let size = file.seek(SeekFrom::End(0)).ok()?;
    let raw = last_lines(&mut file, size)?;
    let mut text: Vec<u8> = Vec::new();
    for line in raw.split_inclusive(|b| *b == b'\n') {
        if let Some(content) = content(line) {
            text.extend_from_slice(&content);
        }
    }
    let keep = text.len().saturating_sub(TAIL_BYTES);
    Some(String::from_utf8_lossy(&text[keep..]).into_owned())
}

/// The file's last [`TAIL_LINES`] lines, reading backwards block by block.
fn last_lines(file: &mut std::fs::File, size: u64) -> Option<Vec<u8>> {
    let floor = size.saturating_sub(READ_LIMIT);
    let mut start = size;
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut count = 0;
    // One newline more than the lines wanted marks where they start.
    while start > floor && count <= TAIL_LINES {
        let from = start.saturating_sub(BLOCK).max(floor);
        let mut block = vec![0; usize::try_from(start - from).ok()?];
        file.seek(SeekFrom::Start(from)).ok()?;
        file.read_exact(&mut block).ok()?;
        count += newlines(&block);
        blocks.push(block);
        start = from;
    }
    let mut buf: Vec<u8> = blocks.into_iter().rev().flatten().collect();
    let mut surplus = count.saturating_sub(TAIL_LINES);
    // Read from the middle of a line (the limit cut it): that line is not whole.
    if start > 0 && surplus == 0 && count > 0 {
        surplus = 1;
    }
    let mut skip = 0;
    for _ in 0..surplus {
        let next = buf[skip..].iter().position(|b| *b == b'\n')?;
        skip += next + 1;
    }
    Some(buf.split_off(skip))
}

fn newlines(buf: &[u8]) -> usize {
    buf.iter().filter(|b| **b == b'\n').count()
}

/// One line's text, with its newline unless the runtime marked it partial; `None` for a line
/// in neither format.
fn content(line: &[u8]) -> Option<Vec<u8>> {
    if line.first() == Some(&b'{') {
        return docker_json(line);
    }
    cri(line)
}

/// `<RFC 3339 time> <stdout|stderr> <tag>[:<more tags>] <text>`.
fn cri(line: &[u8]) -> Option<Vec<u8>> {
    let (newline, line) = match line.strip_suffix(b"\n") {
        Some(line) => (true, line),
        None => (false, line),
    };
    let mut parts = line.splitn(4, |b| *b == b' ');
    let _time = parts.next().filter(|time| !time.is_empty())?;
    let stream = parts.next()?;
    if stream != b"stdout" && stream != b"stderr" {
        return None;
    }
    let tags = parts.next()?;
    let partial = tags.split(|b| *b == b':').next() == Some(b"P");
    let mut text = parts.next().unwrap_or_default().to_vec();
    if newline && !partial {
        text.push(b'\n');
    }
    Some(text)
}

#[derive(serde::Deserialize)]
struct JsonLine {
    log: String,
}

/// Docker's json-file line: the text is `log`, with its newline when the line was whole.
fn docker_json(line: &[u8]) -> Option<Vec<u8>> {
    serde_json::from_slice::<JsonLine>(line)
        .ok()
        .map(|line| line.log.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pdc-log-tail-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let path = dir.join("0.log");
        std::fs::write(&path, text).ok();
        path
    }

    #[test]
    fn cri_lines_are_joined_as_the_kubelet_reads_them() {
        let path = written(
            "cri",
            "2026-01-01T00:00:00.1Z stdout F starting\n\
             2026-01-01T00:00:00.2Z stderr P part one, \n\
             2026-01-01T00:00:00.3Z stderr F part two\n\
             not a log line\n",
        );
        assert_eq!(
            tail(&path).as_deref(),
            Some("starting\npart one, part two\n")
        );
    }

    #[test]
    fn docker_json_lines_too() {
        let path = written(
            "json",
            "{\"log\":\"connecting to db\\n\",\"stream\":\"stdout\",\"time\":\"2026-01-01T00:00:00Z\"}\n\
             {\"log\":\"fatal: no route\\n\",\"stream\":\"stderr\",\"time\":\"2026-01-01T00:00:01Z\"}\n",
        );
        assert_eq!(
            tail(&path).as_deref(),
            Some("connecting to db\nfatal: no route\n")
        );
    }

    #[test]
    fn only_the_last_80_lines_and_2048_bytes() {
        let lines: String = (0..200)
            .map(|i| format!("2026-01-01T00:00:00Z stdout F line {i}\n"))
            .collect();
        let path = written("lines", &lines);
        let got = tail(&path).unwrap_or_default();
        assert!(got.starts_with("line 120\n"), "{got}");
        assert!(got.ends_with("line 199\n"), "{got}");
        assert_eq!(got.lines().count(), 80);
        // Over many blocks.
        let many: String = (0..5000)
            .map(|i| format!("2026-01-01T00:00:00Z stdout F line {i}\n"))
            .collect();
        let path = written("many", &many);
        let got = tail(&path).unwrap_or_default();
        assert!(got.starts_with("line 4920\n"), "{got}");
        assert_eq!(got.lines().count(), 80);

        let long: String = (0..20)
            .map(|i| format!("2026-01-01T00:00:00Z stdout F {i:02}{}\n", "x".repeat(500)))
            .collect();
        let path = written("bytes", &long);
        let got = tail(&path).unwrap_or_default();
        assert_eq!(got.len(), TAIL_BYTES);
        assert!(got.ends_with(&format!("19{}\n", "x".repeat(500))));
    }

    #[test]
    fn a_missing_log_gives_nothing() {
        assert_eq!(tail(Path::new("/nonexistent/pdc/0.log")), None);
    }
}
