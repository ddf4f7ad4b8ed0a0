//! Every log line passes through the PII and secret scrubber before it leaves the process:
//! e-mail addresses, card numbers, SSNs, phone numbers, IBANs and secrets (API keys, bearer tokens,
//! JWTs, private keys) become type tags such as `[EMAIL]`. IP addresses stay: listen addresses and
//! client addresses are operational facts the logs exist to record (OWASP ASVS 5.0 V16.2.1), and
//! the process logs no request bodies or query strings at all.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Wraps a writer factory so every write is scrubbed. The fmt layer formats a whole event and
/// writes it with one call, so each call is one complete line.
#[derive(Debug, Clone)]
pub struct Scrubbing<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Scrubbing<M> {
    type Writer = ScrubbingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbingWriter(self.0.make_writer())
    }
}

#[derive(Debug)]
pub struct ScrubbingWriter<W>(W);

impl<W: Write> Write for ScrubbingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(scrub(text).as_bytes()),
            // The fmt layer writes UTF-8; anything else is passed through lossily scrubbed.
            Err(_) => self.0.write_all(scrub(&String::from_utf8_lossy(buf)).as_bytes()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The scrubbed line; borrowed unchanged when nothing is found.
pub fn scrub(line: &str) -> std::borrow::Cow<'_, str> {
    pii::scrub_keeping(line, &[pii::Kind::IpAddress])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_tokens_and_keys_are_tagged_and_listen_addresses_stay() {
        let line = r#"{"message":"mail to alice@example.com failed","token":"Bearer eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlc2lnbmF0dXJl","address":"127.0.0.1:8080"}"#;
        let out = scrub(line);
        assert!(!out.contains("alice@example.com"), "{out}");
        assert!(!out.contains("eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9"), "{out}");
        assert!(out.contains("127.0.0.1:8080"), "{out}");
    }

    #[test]
    fn a_clean_line_is_written_unchanged() {
        let line = r#"{"level":"INFO","message":"request served","http.path":"/healthz","http.status":200}"#;
        assert!(matches!(scrub(line), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn the_writer_scrubs_what_passes_through_it() {
        let mut out = Vec::new();
        ScrubbingWriter(&mut out).write_all(b"reset requested for bob@example.org\n").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "reset requested for [EMAIL]\n");
    }
}
