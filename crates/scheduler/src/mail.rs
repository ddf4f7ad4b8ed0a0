//! Outgoing mail: an SMTP relay (lettre) in production, a local file in the embedded default.

use std::{path::PathBuf, sync::Arc};

use lettre::{message::Mailbox, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

/// Action kind for one e-mail.
pub const SEND_EMAIL: &str = "send_email";

/// One message, as stored (sealed) in the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    /// Appends each message to a file (development default: nothing leaves the machine).
    File {
        path: Arc<PathBuf>,
        from: Mailbox,
    },
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mailer::Smtp { .. } => f.write_str("Mailer::Smtp"),
            Mailer::File { path, .. } => write!(f, "Mailer::File({})", path.display()),
        }
    }
}

/// Errors building a mailer.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("mail.from is not a valid address")]
    BadFrom,
    #[error("mail.smtp_url is not a valid SMTP URL (smtp://, smtps:// or smtp://…?tls=required)")]
    BadUrl,
}

impl Mailer {
    /// An SMTP relay from a URL such as `smtps://user:pass@smtp.example.com` (lettre's URL
    /// format: `smtp://host:port` is plain and only for loopback sinks).
    pub fn smtp(url: &str, from: &str) -> Result<Mailer, MailerError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|_| MailerError::BadUrl)?.build();
        Ok(Mailer::Smtp { transport, from: from.parse().map_err(|_| MailerError::BadFrom)? })
    }

    pub fn file(path: PathBuf, from: &str) -> Result<Mailer, MailerError> {
        Ok(Mailer::File { path: Arc::new(path), from: from.parse().map_err(|_| MailerError::BadFrom)? })
    }

    /// Sends one message. `idempotency_key` (the outbox action id) becomes the Message-ID, so a
    /// retried delivery is recognisable as the same message.
    pub async fn send(&self, mail: &Mail, idempotency_key: ids::ActionId) -> Result<(), String> {
        let from = match self {
            Mailer::Smtp { from, .. } | Mailer::File { from, .. } => from.clone(),
        };
        let to: Mailbox = mail.to.parse().map_err(|_| "invalid recipient address".to_owned())?;
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(mail.subject.clone())
            .message_id(Some(format!("<{idempotency_key}@rampart>")))
            .body(mail.body.clone())
            .map_err(|e| e.to_string())?;
        match self {
            Mailer::Smtp { transport, .. } => transport.send(message).await.map(|_| ()).map_err(|e| e.to_string()),
            Mailer::File { path, .. } => {
                use tokio::io::AsyncWriteExt;
                let mut file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path.as_ref())
                    .await
                    .map_err(|e| e.to_string())?;
                let mut bytes = message.formatted();
                bytes.extend_from_slice(b"\r\n");
                file.write_all(&bytes).await.map_err(|e| e.to_string())
            }
        }
    }
}
