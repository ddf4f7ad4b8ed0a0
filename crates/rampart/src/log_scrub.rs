//! Log scrubbing field by field: personal data and secrets leave the process as type tags, while
//! the ids, codes, paths and error texts that diagnose a failure come through intact.
//!
//! # What is scrubbed, and by what it is
//!
//! Every field value and the message are scanned *alone* with the shared `pii` scanner:
//! e-mail addresses, card numbers, phone numbers, IBANs, SSNs and secrets (bearer tokens, JWTs,
//! provider keys such as `rk_live_…` and `whsec_…`, private key blocks, passwords in `key=value`)
//! become tags such as `[EMAIL]` and `[SECRET]`. The password of a URL (`scheme://user:pw@host`,
//! RFC 3986 §3.2.1) becomes `[SECRET]` first, here, because the scanner alone reads
//! `pw@host` as an e-mail address and would leave any part of the password before a symbol
//! (`Tr0ub4dor&3@db` becomes `Tr0ub4dor&[EMAIL]`). IP addresses stay: listen and client
//! addresses are operational facts the logs exist to record (OWASP ASVS 5.0 V16.2.1), and the
//! process logs no request bodies or query strings at all.
//!
//! Scanning one value at a time is what keeps causes readable. Scanned as one formatted line, a
//! value's opening quote and its field name look like `key: "value"`, and the scanner's
//! high-entropy rule then takes a whole quoted value with upper case, lower case and digits for a
//! secret: `"authz.endpoint":"POST /api/v1/workspaces/<uuid>/projects"` became `[SECRET]`, and so
//! did database errors naming a row. Alone, UUIDs, file paths, SQLSTATE codes, PostgreSQL and
//! SQLite error texts, configuration errors and route paths match nothing (see the corpus test
//! `realistic_causes_keep_their_diagnosis_and_lose_every_secret_and_personal_datum`).
//!
//! # Fields that pass untouched
//!
//! [`UNTOUCHED`] lists the field names whose values the code makes from typed values, so they can
//! hold nothing else: typed ids (`user.id`, `tenant.id`, `workspace.id`, `source.id`,
//! `delivery.id`, `action.id`, `row.id`), stable codes (`code`, `error.code`, `sqlstate`,
//! `outcome.status`, `fault`), the authorization decision (`authz.required`, `authz.actual`),
//! kinds and names from the code (`action.kind`, `auth.event`, `purpose`, `table`, `backend`,
//! `migration.name`) and numbers and HTTP tokens (`status`, `http.status`, `method`,
//! `http.method`, `latency_ms`, `duration_ms`, `timeout_ms`, `attempt`, `version`,
//! `migration.version`). The formatter's own metadata (`timestamp`, `level`, `target`,
//! `filename`, `line_number`, `threadName`, `threadId`, the `log.*` fields of bridged `log`
//! records, and a span's `name`) passes too. The list was read off every `tracing` call in the
//! workspace; a field not on it is scanned, which is the safe default for a new one.
//!
//! Scanned alone although they are known to be harmless in the normal case: `authz.endpoint`,
//! `http.path`, `path` and `request.id` / `request_id`. Their text is chosen by a client (the raw
//! request path, also of requests that matched no route; a client-supplied request id) or by an
//! operator (a file path), so an e-mail address or token put there must still be caught; every
//! route of the API, with UUIDs in its parameters, comes through byte for byte
//! (`every_route_path_and_endpoint_comes_through_unchanged`).
//!
//! # How
//!
//! JSON lines (the default format): [`Scrubbing`] wraps the writer, parses each line the fmt layer
//! writes, scrubs each value by its key (event fields at the top level, span fields in `span` and
//! `spans`) and writes the object again with its keys in their order. The writer is the one place
//! where the JSON formatter's output can be reached: it records event fields with its own visitor,
//! not through a `FormatFields`, so a field formatter would only ever see span fields. A line that
//! is not a JSON object is scrubbed whole, as before. A line in which nothing is found is written
//! as it came.
//!
//! Text lines (`log.format = "text"`): [`ScrubbedFields`] formats the fields, scrubbing each
//! value as it is recorded and escaping control characters so a value cannot start a new line;
//! the writer is not wrapped, so nothing is scanned twice.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::ops::Range;

use pii::Kind;
use serde::ser::{SerializeMap as _, SerializeSeq as _};
use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, MakeWriter};

/// Kinds left in place in every value (see the module documentation).
const KEEP: &[Kind] = &[Kind::IpAddress];

/// Field names whose values pass untouched: the code makes them from typed values (see the
/// module documentation for the reasoning and for the names that are scanned on purpose).
pub const UNTOUCHED: &[&str] = &[
    // Typed ids (UUIDs).
    "user.id",
    "tenant.id",
    "workspace.id",
    "source.id",
    "delivery.id",
    "action.id",
    "row.id",
    // Stable codes.
    "code",
    "error.code",
    "sqlstate",
    "outcome.status",
    "fault",
    // The authorization decision.
    "authz.required",
    "authz.actual",
    // Kinds and names the code chooses.
    "action.kind",
    "auth.event",
    "purpose",
    "table",
    "backend",
    "migration.name",
    // Numbers and HTTP tokens.
    "status",
    "http.status",
    "method",
    "http.method",
    "latency_ms",
    "duration_ms",
    "timeout_ms",
    "attempt",
    "version",
    "migration.version",
];

/// Keys the JSON formatter writes itself at the top level of a line.
const METADATA: &[&str] = &[
    "timestamp",
    "level",
    "target",
    "filename",
    "line_number",
    "threadName",
    "threadId",
    "log.target",
    "log.module_path",
    "log.file",
    "log.line",
];

/// The value of field `name`, scrubbed unless the field is in [`UNTOUCHED`].
pub fn scrub_field<'v>(name: &str, value: &'v str) -> Cow<'v, str> {
    if UNTOUCHED.contains(&name) {
        Cow::Borrowed(value)
    } else {
        scrub_value(value)
    }
}

/// One value scrubbed by what it is: URL passwords and every kind the scanner finds except IP
/// addresses become tags. Borrowed unchanged when nothing is found.
pub fn scrub_value(text: &str) -> Cow<'_, str> {
    let passwords = url_passwords(text);
    if passwords.is_empty() {
        return pii::scrub_keeping(text, KEEP);
    }
    // The text around each password is scanned on its own, so the tag put in its place is never
    // read as part of a neighbouring value.
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for password in passwords {
        out.push_str(&pii::scrub_keeping(&text[last..password.start], KEEP));
        out.push_str(Kind::Secret.tag());
        last = password.end;
    }
    out.push_str(&pii::scrub_keeping(&text[last..], KEEP));
    Cow::Owned(out)
}

/// The byte ranges of the passwords in URLs with user information, `scheme://user:password@host`
/// (RFC 3986 §3.2.1). The authority ends at the first `/`, `?`, `#`, white space or quote; its
/// user information ends at its last `@`; the password starts after the first `:` in it. Values
/// already hidden (`***`, `[SECRET]`) are left.
fn url_passwords(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = text.get(from..).and_then(|rest| rest.find("://")) {
        let separator = from + found;
        let start = separator + 3;
        let end_of_authority =
            |c: &u8| c.is_ascii_whitespace() || matches!(c, b'/' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>' | b'`');
        let end = b[start..].iter().position(end_of_authority).map_or(b.len(), |i| start + i);
        from = end;
        // A scheme ends in a letter or digit (RFC 3986 §3.1).
        let scheme = separator > 0 && b[separator - 1].is_ascii_alphanumeric();
        let authority = &b[start..end];
        let Some(at) = authority.iter().rposition(|&c| c == b'@') else { continue };
        let Some(colon) = authority[..at].iter().position(|&c| c == b':') else { continue };
        let password = &text[start + colon + 1..start + at];
        let hidden = password.bytes().all(|c| c == b'*') || (password.starts_with('[') && password.ends_with(']'));
        if scheme && !hidden {
            out.push(start + colon + 1..start + at);
        }
    }
    out
}

/// A whole line scrubbed: a JSON object value by value, anything else whole. Borrowed unchanged
/// when nothing is found.
pub fn scrub_line(line: &str) -> Cow<'_, str> {
    let body = line.trim_end_matches(['\n', '\r']);
    let Ok(Node::Object(mut fields)) = serde_json::from_str::<Node>(body) else { return scrub_value(line) };
    let mut changed = false;
    for (key, value) in &mut fields {
        match (key.as_str(), value) {
            (key, _) if METADATA.contains(&key) => {}
            ("span", Node::Object(span)) => scrub_span(span, &mut changed),
            ("spans", Node::Array(spans)) => {
                for span in spans {
                    match span {
                        Node::Object(span) => scrub_span(span, &mut changed),
                        other => scrub_node("spans", other, &mut changed),
                    }
                }
            }
            (key, value) => scrub_node(key, value, &mut changed),
        }
    }
    if !changed {
        return Cow::Borrowed(line);
    }
    match serde_json::to_string(&Node::Object(fields)) {
        Ok(mut out) => {
            out.push_str(&line[body.len()..]);
            Cow::Owned(out)
        }
        // Serialising strings, numbers and maps cannot fail; should it, the line is scrubbed whole.
        Err(_) => scrub_value(line),
    }
}

/// A span's fields: its `name` is the formatter's; the rest are fields like an event's.
fn scrub_span(span: &mut [(String, Node)], changed: &mut bool) {
    for (key, value) in span {
        if key != "name" {
            scrub_node(key, value, changed);
        }
    }
}

/// One value under `key`: strings scanned, numbers scanned as their digits (a card or phone
/// number logged as an integer is tagged as a string), arrays element by element, objects key by
/// key.
fn scrub_node(key: &str, node: &mut Node, changed: &mut bool) {
    if UNTOUCHED.contains(&key) {
        return;
    }
    match node {
        Node::Str(text) => {
            if let Cow::Owned(scrubbed) = scrub_value(text) {
                *text = scrubbed;
                *changed = true;
            }
        }
        Node::Scalar(serde_json::Value::Number(n)) => {
            if let Cow::Owned(scrubbed) = scrub_value(&n.to_string()) {
                *node = Node::Str(scrubbed);
                *changed = true;
            }
        }
        Node::Scalar(_) => {}
        Node::Array(items) => {
            for item in items {
                scrub_node(key, item, changed);
            }
        }
        Node::Object(fields) => {
            for (key, value) in fields {
                scrub_node(key, value, changed);
            }
        }
    }
}

/// A JSON value that keeps its object keys in the order they came (serde_json's own map sorts
/// them unless its `preserve_order` feature is on), so a scrubbed line reads like the original.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    Str(String),
    /// A number, a boolean or null.
    Scalar(serde_json::Value),
}

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> serde::de::Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(v.into()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(v.into()))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar(serde_json::Value::Null))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut fields = Vec::new();
        while let Some(entry) = map.next_entry()? {
            fields.push(entry);
        }
        Ok(Node::Object(fields))
    }
}

impl serde::Serialize for Node {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Object(fields) => {
                let mut map = serializer.serialize_map(Some(fields.len()))?;
                for (key, value) in fields {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
            Node::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Str(text) => serializer.serialize_str(text),
            Node::Scalar(value) => value.serialize(serializer),
        }
    }
}

/// Wraps the JSON format's writer factory so every line is scrubbed value by value. The fmt layer
/// formats a whole event and writes it with one call, so each call is one complete line.
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
        // The fmt layer writes UTF-8; anything else is scrubbed after a lossy conversion.
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(scrub_line(&text).as_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The text format's field formatter: `name=value` pairs separated by spaces, the message bare,
/// each value scrubbed by [`scrub_field`] and its control characters escaped. The `log.*` fields
/// of bridged `log` records are left out, as the default formatter does (the line shows their
/// target already).
#[derive(Debug, Clone, Copy, Default)]
pub struct ScrubbedFields;

impl<'w> FormatFields<'w> for ScrubbedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = TextVisitor { writer, first: true, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct TextVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl TextVisitor<'_> {
    fn field(&mut self, name: &str, value: &str, quoted: bool) {
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        let value = scrub_field(name, value);
        let separator = if std::mem::take(&mut self.first) { "" } else { " " };
        self.result = match (name, quoted) {
            ("message", _) => write!(self.writer, "{separator}{}", Escaped(&value)),
            (_, true) => write!(self.writer, "{separator}{name}={:?}", value.as_ref()),
            (_, false) => write!(self.writer, "{separator}{name}={}", Escaped(&value)),
        };
    }
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field.name(), value, true);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field.name(), &format!("{value:?}"), false);
    }
}

/// Control characters written as escapes (`\n`, `\u{1b}`), so a value cannot begin a forged line
/// or drive a terminal.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    const WORKSPACE: &str = "0b9f3c2e-8d4a-4f1b-9c7e-2a5d6e8f1b3c";
    const USER: &str = "7c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
    const JWT: &str = "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlc2lnbmF0dXJl";

    /// Log values as the process writes them: (field, value logged, value written). A row whose
    /// two values are equal is a cause that must come through whole.
    const CORPUS: &[(&str, &str, &str)] = &[
        // PostgreSQL errors as sea-orm shows them, and their Debug form with detail and SQLSTATE.
        (
            "error",
            r#"Query Error: error returned from database: duplicate key value violates unique constraint "projects_tenant_id_name_key""#,
            r#"Query Error: error returned from database: duplicate key value violates unique constraint "projects_tenant_id_name_key""#,
        ),
        (
            "error",
            r#"Execution Error: error returned from database: insert or update on table "members" violates foreign key constraint "members_user_id_fkey""#,
            r#"Execution Error: error returned from database: insert or update on table "members" violates foreign key constraint "members_user_id_fkey""#,
        ),
        (
            "error",
            "Query Error: error returned from database: deadlock detected",
            "Query Error: error returned from database: deadlock detected",
        ),
        (
            "error",
            "Query Error: error returned from database: could not serialize access due to concurrent update",
            "Query Error: error returned from database: could not serialize access due to concurrent update",
        ),
        (
            "error",
            r#"Query Error: error returned from database: new row violates row-level security policy for table "projects""#,
            r#"Query Error: error returned from database: new row violates row-level security policy for table "projects""#,
        ),
        (
            "error",
            "Connection Error: pool timed out while waiting for an open connection",
            "Connection Error: pool timed out while waiting for an open connection",
        ),
        (
            "error.debug",
            r#"Query(SqlxError(Database(PgDatabaseError { severity: Error, code: "23505", message: "duplicate key value violates unique constraint \"projects_tenant_id_name_key\"", detail: Some("Key (tenant_id, name)=(0b9f3c2e-8d4a-4f1b-9c7e-2a5d6e8f1b3c, Apollo) already exists."), table: Some("projects"), constraint: Some("projects_tenant_id_name_key"), file: Some("nbtinsert.c"), line: Some(666) })))"#,
            r#"Query(SqlxError(Database(PgDatabaseError { severity: Error, code: "23505", message: "duplicate key value violates unique constraint \"projects_tenant_id_name_key\"", detail: Some("Key (tenant_id, name)=(0b9f3c2e-8d4a-4f1b-9c7e-2a5d6e8f1b3c, Apollo) already exists."), table: Some("projects"), constraint: Some("projects_tenant_id_name_key"), file: Some("nbtinsert.c"), line: Some(666) })))"#,
        ),
        (
            "error.debug",
            r#"Query(SqlxError(Database(PgDatabaseError { code: "23505", message: "duplicate key value violates unique constraint \"users_email_key\"", detail: Some("Key (email)=(alice@example.com) already exists.") })))"#,
            r#"Query(SqlxError(Database(PgDatabaseError { code: "23505", message: "duplicate key value violates unique constraint \"users_email_key\"", detail: Some("Key (email)=([EMAIL]) already exists.") })))"#,
        ),
        (
            "error.debug",
            r#"Query(SqlxError(Database(PgDatabaseError { code: "40P01", message: "deadlock detected", detail: Some("Process 4172 waits for ShareLock on transaction 918273; blocked by process 4188."), where: Some("while updating tuple (0,12) in relation \"outbox\"") })))"#,
            r#"Query(SqlxError(Database(PgDatabaseError { code: "40P01", message: "deadlock detected", detail: Some("Process 4172 waits for ShareLock on transaction 918273; blocked by process 4188."), where: Some("while updating tuple (0,12) in relation \"outbox\"") })))"#,
        ),
        ("sqlstate", "23503", "23503"),
        // SQLite.
        (
            "error",
            "Query Error: error returned from database: (code: 5) database is locked",
            "Query Error: error returned from database: (code: 5) database is locked",
        ),
        ("error", "database is locked (code: 5)", "database is locked (code: 5)"),
        // Configuration and start-up errors.
        ("error", "missing field `vault_key`", "missing field `vault_key`"),
        (
            "error",
            r#"missing field `vault_key` for key "default.secrets""#,
            r#"missing field `vault_key` for key "default.secrets""#,
        ),
        (
            "error",
            r#"invalid type: found string "abc", expected u64 for key "RAMPART__HTTP__PORT" in RAMPART_ environment variable(s)"#,
            r#"invalid type: found string "abc", expected u64 for key "RAMPART__HTTP__PORT" in RAMPART_ environment variable(s)"#,
        ),
        (
            "error",
            "reading /etc/rampart/rampart.toml: No such file or directory (os error 2)",
            "reading /etc/rampart/rampart.toml: No such file or directory (os error 2)",
        ),
        (
            "error",
            "secrets.vault_key must be 64 hexadecimal characters (32 bytes)",
            "secrets.vault_key must be 64 hexadecimal characters (32 bytes)",
        ),
        (
            "error",
            "connecting to the database: Connection Error: error communicating with database: failed to lookup address information: Name or service not known",
            "connecting to the database: Connection Error: error communicating with database: failed to lookup address information: Name or service not known",
        ),
        (
            "error",
            "connecting to postgres://rampart_app:Tr0ub4dor&3@db.internal:5432/rampart: Connection refused (os error 111)",
            "connecting to postgres://rampart_app:[SECRET]@db.internal:5432/rampart: Connection refused (os error 111)",
        ),
        (
            "error",
            "redis.url is not a valid Redis URL: redis://:s3cretPass99@redis.internal:6379/0",
            "redis.url is not a valid Redis URL: redis://:[SECRET]@redis.internal:6379/0",
        ),
        ("error", "smtp://mailer:correcthorse@smtp.example.com:587", "smtp://mailer:[SECRET]@smtp.example.com:587"),
        // File paths.
        ("path", "/var/lib/rampart/dev-keys.json", "/var/lib/rampart/dev-keys.json"),
        ("data_dir", "/var/lib/rampart", "/var/lib/rampart"),
        // Authorization failures.
        (
            "authz.endpoint",
            "POST /api/v1/workspaces/0b9f3c2e-8d4a-4f1b-9c7e-2a5d6e8f1b3c/projects",
            "POST /api/v1/workspaces/0b9f3c2e-8d4a-4f1b-9c7e-2a5d6e8f1b3c/projects",
        ),
        ("authz.required", "project.create", "project.create"),
        ("authz.actual", "viewer", "viewer"),
        ("user.id", USER, USER),
        ("tenant.id", WORKSPACE, WORKSPACE),
        ("request.id", "3f2a9c1e7b4d4e8ab2c69d0e1f2a3b4c", "3f2a9c1e7b4d4e8ab2c69d0e1f2a3b4c"),
        ("message", "rampart listening on https://0.0.0.0:8443", "rampart listening on https://0.0.0.0:8443"),
        // Personal data and secrets inside causes.
        (
            "error",
            "smtp: permanent error (550): 5.1.1 <alice@example.com>: Recipient address rejected",
            "smtp: permanent error (550): 5.1.1 <[EMAIL]>: Recipient address rejected",
        ),
        (
            "error",
            "invalid bearer token: Bearer eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlc2lnbmF0dXJl",
            "invalid bearer token: Bearer [SECRET]",
        ),
        (
            "error",
            "ID token refused: eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlc2lnbmF0dXJl",
            "ID token refused: [SECRET]",
        ),
        ("error", "api key rk_live_4eC39HqLyjWDarjtT1zdp7dc was revoked", "api key [SECRET] was revoked"),
        ("error", "signature refused under whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "signature refused under [SECRET]"),
        (
            "error",
            "bad key: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----",
            "bad key: [SECRET]",
        ),
        (
            "error",
            "error sending request for url (https://hooks.example.com/rampart?token=abc123XYZ789def456GHI): operation timed out",
            "error sending request for url (https://hooks.example.com/rampart?token=[SECRET]): operation timed out",
        ),
        ("message", "call +1 415 555 0132 back", "call [PHONE_NUMBER] back"),
        ("error", "card 4111 1111 1111 1111 declined", "card [CREDIT_CARD] declined"),
        ("error", "payout to DE89 3704 0044 0532 0130 00 failed", "payout to [IBAN] failed"),
        ("error", "ssn 536-22-8145 on file", "ssn [US_SSN] on file"),
    ];

    /// Every secret and personal datum in [`CORPUS`].
    const PRIVATE: &[&str] = &[
        "alice@example.com",
        "Tr0ub4dor",
        "s3cretPass99",
        "correcthorse",
        "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9",
        "rk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
        "abc123XYZ789def456GHI",
        "415 555 0132",
        "4111 1111 1111 1111",
        "DE89 3704 0044 0532 0130 00",
        "536-22-8145",
    ];

    /// A JSON line as the fmt layer writes it, with `value` under `field`.
    fn line_with(field: &str, value: &str) -> String {
        let mut line = format!(
            r#"{{"timestamp":"2025-03-14T09:26:53.589793Z","level":"ERROR",{}:{},"target":"api::error","span":{{"request.id":"3f2a9c1e7b4d4e8ab2c69d0e1f2a3b4c","name":"request"}}}}"#,
            serde_json::to_string(field).unwrap(),
            serde_json::to_string(value).unwrap()
        );
        line.push('\n');
        line
    }

    #[test]
    fn realistic_causes_keep_their_diagnosis_and_lose_every_secret_and_personal_datum() {
        let mut written = Vec::new();
        for &(field, logged, expected) in CORPUS {
            let line = line_with(field, logged);
            let out = scrub_line(&line);
            let json: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(json[field], expected, "field {field} in {out}");
            assert_eq!(json["timestamp"], "2025-03-14T09:26:53.589793Z", "{out}");
            assert_eq!(json["span"]["request.id"], "3f2a9c1e7b4d4e8ab2c69d0e1f2a3b4c", "{out}");
            written.push(out.into_owned());
        }
        let logged: String = CORPUS.iter().map(|(_, logged, _)| *logged).collect();
        for private in PRIVATE {
            assert!(logged.contains(private), "{private} is not in the corpus, so its absence proves nothing");
            for out in &written {
                assert!(!out.contains(private), "{private} survived: {out}");
            }
        }
    }

    /// Routes of the API as templates; the test fills in their parameters.
    const ROUTES: &[&str] = &[
        "/api/v1/workspaces/:workspace_id/projects",
        "/api/v1/workspaces/:workspace_id/projects/:project_id",
        "/api/v1/workspaces/:workspace_id/members/:user_id/sessions/revoke",
        "/api/v1/workspaces/:workspace_id/api-keys/:key_id/revoke",
        "/api/v1/workspaces/:workspace_id/connections/:connection_id/secret",
        "/api/v1/workspaces/:workspace_id/webhook-endpoints/:endpoint_id/rotate-secret",
        "/api/v1/workspaces/:workspace_id/webhook-sources/:source_id/secrets",
        "/api/v1/workspaces/:workspace_id/webhook-deliveries/:delivery_id/replay",
        "/api/v1/workspaces/:workspace_id/authorization-failures",
        "/api/v1/workspaces/:workspace_id/activity/:activity_id",
        "/api/v1/workspaces/:workspace_id/mfa-requirement",
        "/api/v1/admin/outbox/:action_id/retry",
        "/api/v1/auth/oidc/:provider/callback",
        "/api/v1/auth/password/reset/confirm",
        "/api/v1/auth/token/refresh",
        "/api/v1/me/mfa/recovery-codes",
        "/api/v1/inbound/:workspace_id/:source_id",
        "/.well-known/jwks.json",
        "/readyz",
    ];

    #[test]
    fn every_route_path_and_endpoint_comes_through_unchanged() {
        for route in ROUTES {
            let path = route
                .replace(":workspace_id", WORKSPACE)
                .replace(":user_id", USER)
                .replace(":provider", "google")
                .replace(":source_id", "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9")
                .replace(":project_id", "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")
                .replace(":key_id", "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d")
                .replace(":connection_id", "9f8e7d6c-5b4a-4392-8180-7f6e5d4c3b2a")
                .replace(":endpoint_id", "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e")
                .replace(":delivery_id", "3c4d5e6f-7a8b-4c9d-8e1f-2a3b4c5d6e7f")
                .replace(":activity_id", "4d5e6f7a-8b9c-4d0e-9f2a-3b4c5d6e7f8a")
                .replace(":action_id", "5e6f7a8b-9c0d-4e1f-8a3b-4c5d6e7f8a9b");
            assert!(!path.contains(':'), "a parameter of {route} was not filled: {path}");
            assert_eq!(scrub_field("http.path", &path), path);
            for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
                let endpoint = format!("{method} {path}");
                assert_eq!(scrub_field("authz.endpoint", &endpoint), endpoint);
            }
        }
    }

    #[test]
    fn a_raw_request_path_carrying_an_address_or_a_token_is_still_tagged() {
        assert_eq!(scrub_field("http.path", "/api/v1/users/alice@example.com"), "/api/v1/users/[EMAIL]");
        assert_eq!(scrub_field("http.path", &format!("/reset/{JWT}")), "/reset/[SECRET]");
        assert_eq!(scrub_field("request.id", JWT), "[SECRET]");
    }

    #[test]
    fn allow_listed_fields_are_not_scanned_at_all() {
        // Each value would be tagged in any other field; the allow-list is what keeps it.
        for (field, value) in [("code", "password=Hunter2!"), ("authz.actual", "alice@example.com"), ("user.id", JWT)] {
            assert_ne!(scrub_value(value), value, "{value} is not tagged anyway, so this row proves nothing");
            assert_eq!(scrub_field(field, value), value);
        }
        assert!(UNTOUCHED.iter().all(|name| !["error", "error.debug", "message", "http.path"].contains(name)));
    }

    #[test]
    fn url_passwords_are_tagged_and_the_rest_of_the_url_stays() {
        let check = |input: &str, expected: &str| assert_eq!(scrub_value(input), expected, "{input}");
        check(
            "postgres://rampart_app:hunter2@db.internal:5432/rampart",
            "postgres://rampart_app:[SECRET]@db.internal:5432/rampart",
        );
        check("postgres://u:p%40ss@h/db", "postgres://u:[SECRET]@h/db");
        check("postgres://u:pa@ss@h/db", "postgres://u:[SECRET]@h/db");
        check("two: a://x:one1one@h and b://y:two2two@k/", "two: a://x:[SECRET]@h and b://y:[SECRET]@k/");
        // No password, or one already hidden: nothing to do.
        check("postgres://db.internal:5432/rampart", "postgres://db.internal:5432/rampart");
        check("postgres://rampart_app:***@db.internal/rampart", "postgres://rampart_app:***@db.internal/rampart");
        check("https://hooks.example.com/a?b=c@d", "https://hooks.example.com/a?b=c@d");
        check("ends with ://", "ends with ://");
    }

    #[test]
    fn a_number_field_holding_a_card_number_is_tagged_and_other_numbers_stay() {
        let out = scrub_line(r#"{"level":"INFO","card":4111111111111111,"attempt":3,"latency":12.5,"ok":true}"#);
        assert_eq!(out, r#"{"level":"INFO","card":"[CREDIT_CARD]","attempt":3,"latency":12.5,"ok":true}"#);
    }

    #[test]
    fn a_scrubbed_json_line_keeps_its_keys_in_their_order_and_its_newline() {
        let line = "{\"timestamp\":\"t\",\"level\":\"WARN\",\"message\":\"mail to alice@example.com failed\",\"z\":1,\"a\":[\"bob@example.org\",2],\"target\":\"scheduler\",\"span\":{\"request.id\":\"r1\",\"name\":\"request\"}}\n";
        let expected = "{\"timestamp\":\"t\",\"level\":\"WARN\",\"message\":\"mail to [EMAIL] failed\",\"z\":1,\"a\":[\"[EMAIL]\",2],\"target\":\"scheduler\",\"span\":{\"request.id\":\"r1\",\"name\":\"request\"}}\n";
        assert_eq!(scrub_line(line), expected);
    }

    #[test]
    fn a_clean_line_is_written_unchanged() {
        let line = r#"{"level":"INFO","message":"request served","http.path":"/healthz","http.status":200}"#;
        assert!(matches!(scrub_line(line), Cow::Borrowed(_)));
    }

    #[test]
    fn a_line_that_is_not_json_is_scrubbed_whole() {
        let mut out = Vec::new();
        ScrubbingWriter(&mut out).write_all(b"reset requested for bob@example.org\n").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "reset requested for [EMAIL]\n");
    }

    /// A writer factory collecting what is written, for a subscriber under test.
    #[derive(Debug, Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;

        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// Events as the process logs them: an authorization failure inside a request span, a server
    /// error with its cause, a start-up error.
    fn emit_realistic_events() {
        let span = tracing::info_span!("request", request.id = "3f2a9c1e7b4d4e8ab2c69d0e1f2a3b4c");
        span.in_scope(|| {
            tracing::warn!(
                authz.endpoint = %format!("POST /api/v1/workspaces/{WORKSPACE}/projects"),
                authz.required = "project.create",
                authz.actual = "viewer",
                user.id = %USER,
                tenant.id = %WORKSPACE,
                "authorization failure"
            );
            let cause = "Query Error: error returned from database: duplicate key value violates unique constraint \"users_email_key\"; detail: Key (email)=(alice@example.com) already exists.";
            tracing::error!(error.code = "internal", error = %cause, "tenant data backend failure");
        });
        let started = "connecting to the database: postgres://rampart_app:hunter2@db.internal:5432/rampart: missing field `vault_key`";
        tracing::error!(error = started, "rampart stopped with an error");
    }

    #[test]
    fn the_json_logger_keeps_causes_endpoints_and_ids_and_tags_what_is_private() {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(Scrubbing(capture.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, emit_realistic_events);
        let text = capture.text();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3, "{text}");
        let authz = &lines[0];
        assert_eq!(authz["authz.endpoint"], format!("POST /api/v1/workspaces/{WORKSPACE}/projects"));
        assert_eq!(authz["authz.required"], "project.create");
        assert_eq!(authz["authz.actual"], "viewer");
        assert_eq!(authz["user.id"], USER);
        assert_eq!(authz["tenant.id"], WORKSPACE);
        assert_eq!(authz["span"]["request.id"], "3f2a9c1e7b4d4e8ab2c69d0e1f2a3b4c");
        assert_eq!(authz["message"], "authorization failure");
        let failure = &lines[1];
        assert_eq!(failure["error.code"], "internal");
        assert_eq!(
            failure["error"],
            "Query Error: error returned from database: duplicate key value violates unique constraint \"users_email_key\"; detail: Key (email)=([EMAIL]) already exists."
        );
        assert_eq!(
            lines[2]["error"],
            "connecting to the database: postgres://rampart_app:[SECRET]@db.internal:5432/rampart: missing field `vault_key`"
        );
        assert!(!text.contains("alice@example.com") && !text.contains("hunter2"), "{text}");
    }

    #[test]
    fn the_text_logger_scrubs_field_by_field_and_keeps_each_event_on_one_line() {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .fmt_fields(ScrubbedFields)
            .with_writer(capture.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            emit_realistic_events();
            tracing::warn!(error = %"line one\nFORGED ERROR line", "message one\nFORGED message");
        });
        let text = capture.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].contains(&format!("authz.endpoint=POST /api/v1/workspaces/{WORKSPACE}/projects ")), "{text}");
        assert!(lines[0].contains(&format!("user.id={USER} tenant.id={WORKSPACE}")), "{text}");
        assert!(lines[0].contains(r#"authz.required="project.create" authz.actual="viewer""#), "{text}");
        assert!(lines[0].contains("request{request.id=\"3f2a9c1e7b4d4e8ab2c69d0e1f2a3b4c\"}"), "{text}");
        assert!(lines[1].contains("duplicate key value violates unique constraint \"users_email_key\"; detail: Key (email)=([EMAIL]) already exists."), "{text}");
        assert!(
            lines[2].contains("postgres://rampart_app:[SECRET]@db.internal:5432/rampart: missing field `vault_key`"),
            "{text}"
        );
        assert!(lines[3].ends_with(r"message one\nFORGED message error=line one\nFORGED ERROR line"), "{text}");
        assert!(!text.contains("alice@example.com") && !text.contains("hunter2"), "{text}");
    }
}
