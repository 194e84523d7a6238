//! Container output as lines: a container's recent log, and the splitter that turns output
//! chunks into whole, bounded lines.

use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;

use crate::{Runtime, RuntimeError};

impl Runtime {
    /// The last `tail` lines of stdout+stderr of a container.
    pub async fn logs(&self, container: &str, tail: usize) -> Result<Vec<String>, RuntimeError> {
        if tail == 0 {
            return Ok(Vec::new());
        }
        let opts = LogsOptions {
            stdout: true,
            stderr: true,
            follow: false,
            tail: tail.to_string(),
            ..Default::default()
        };
        let mut stream = self.docker.logs(container, Some(opts));
        let mut lines = LineSplitter::default();
        while let Some(item) = stream.next().await {
            let chunk =
                item.map_err(|e| RuntimeError::docker(format!("logs of {container}"), e))?;
            lines.push(chunk.as_ref());
        }
        let mut all = lines.finish();
        if all.len() > tail {
            all.drain(..all.len() - tail);
        }
        Ok(all)
    }
}

/// Longest line kept whole; a longer one is cut into pieces this long, so output without
/// newlines cannot grow memory.
const MAX_LINE: usize = 16 * 1024;

/// Turns arbitrary output chunks into whole lines (chunks need not end at a newline).
#[derive(Default)]
pub(crate) struct LineSplitter {
    partial: Vec<u8>,
    lines: Vec<String>,
}

impl LineSplitter {
    /// Adds a chunk; returns how many complete lines are now available.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> usize {
        let before = self.lines.len();
        for &b in chunk {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.partial);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.lines.push(String::from_utf8_lossy(&line).into_owned());
            } else {
                self.partial.push(b);
                if self.partial.len() >= MAX_LINE {
                    let piece = std::mem::take(&mut self.partial);
                    self.lines
                        .push(String::from_utf8_lossy(&piece).into_owned());
                }
            }
        }
        self.lines.len() - before
    }

    pub(crate) fn take_lines(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lines)
    }

    pub(crate) fn finish(mut self) -> Vec<String> {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        self.lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitter_cuts_endless_lines() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(&vec![b'a'; MAX_LINE * 2 + 5]), 2);
        assert!(s.take_lines().iter().all(|l| l.len() == MAX_LINE));
        assert_eq!(s.finish(), vec!["aaaaa".to_string()]);
    }

    #[test]
    fn splitter_handles_partial_chunks() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"hel"), 0);
        assert_eq!(s.push(b"lo\r\nwor"), 1);
        assert_eq!(s.take_lines(), vec!["hello".to_string()]);
        assert_eq!(s.push(b"ld\n\nx"), 2);
        assert_eq!(
            s.finish(),
            vec!["world".to_string(), String::new(), "x".to_string()]
        );
    }
}
