//! A reader of `text/event-stream`: bytes in, whole events out (the WHATWG rules the notifier's
//! streams need: `event`, `id`, `data` over several lines, comments, CRLF or LF).

/// One event of the stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// `event:`; `message` when the event names none.
    pub event: String,
    /// `id:`, if given.
    pub id: Option<String>,
    /// The `data:` lines joined by newlines.
    pub data: String,
}

/// Splits a byte stream into events; bytes may arrive cut anywhere.
#[derive(Default)]
pub(crate) struct SseReader {
    line: Vec<u8>,
    event: Option<String>,
    id: Option<String>,
    data: Option<String>,
    after_cr: bool,
}

impl SseReader {
    /// Reads `bytes`, appending the events they complete to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) {
        for &byte in bytes {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(out);
                }
                b'\n' => self.end_line(out),
                _ => self.line.push(byte),
            }
        }
    }

    /// Forgets a half-read event (the connection it came on is gone).
    pub fn reset(&mut self) {
        *self = SseReader::default();
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                out.push(SseEvent {
                    event: self.event.take().unwrap_or_else(|| "message".to_owned()),
                    id: self.id.take(),
                    data,
                });
            }
            self.event = None;
            self.id = None;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let line = String::from_utf8_lossy(&line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "id" => self.id = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events cut at every byte read the same as whole ones; comments are skipped; data lines
    /// join; CRLF and LF both end lines; an event without data is not dispatched.
    #[test]
    fn events_read_across_any_cut() {
        let text = ": ping\r\nevent: positions\r\ndata: {\"a\":1}\r\n\r\n\
                    event: output\nid: a:2\ndata: x\ndata: y\n\n\
                    event: nothing\n\n\
                    data:z\n\n";
        let expected = vec![
            SseEvent {
                event: "positions".into(),
                id: None,
                data: "{\"a\":1}".into(),
            },
            SseEvent {
                event: "output".into(),
                id: Some("a:2".into()),
                data: "x\ny".into(),
            },
            SseEvent {
                event: "message".into(),
                id: None,
                data: "z".into(),
            },
        ];
        let mut whole = Vec::new();
        SseReader::default().feed(text.as_bytes(), &mut whole);
        assert_eq!(whole, expected);
        let mut cut = Vec::new();
        let mut reader = SseReader::default();
        for byte in text.as_bytes() {
            reader.feed(std::slice::from_ref(byte), &mut cut);
        }
        assert_eq!(cut, expected);
    }
}
