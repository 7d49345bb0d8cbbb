//! Outgoing mail: verification links, invitations, password resets. Over SMTP when
//! `smtp.url` is set (`lettre`, TLS or STARTTLS through rustls); otherwise each mail's text
//! is written to the log, so that a development server's links can be followed.
//!
//! Sending never holds up the request that caused it: [`Mailer::send_later`] hands the mail
//! to a task, and a failure is logged and counted (`stoa_mail_failures_total`), never shown
//! to the person who asked (a reset must answer the same whether the address exists or not).

use std::sync::Arc;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::SmtpSettings;

/// One mail to one person.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    /// Plain text; the HTML part is this text, escaped, with its links made clickable.
    pub text: String,
    /// A one-click unsubscribe address (`List-Unsubscribe`, `List-Unsubscribe-Post`).
    pub unsubscribe: Option<String>,
}

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    pub fn new(settings: &SmtpSettings) -> Result<SmtpMailer, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&settings.url)
            .map_err(|e| format!("not an SMTP URL lettre accepts: {e}"))?
            .timeout(Some(std::time::Duration::from_secs(20)))
            .build();
        let from = settings
            .from
            .parse::<Mailbox>()
            .map_err(|e| format!("smtp.from is not a mailbox ({e})"))?;
        Ok(SmtpMailer { transport, from })
    }

    async fn send(&self, mail: &Mail) -> Result<(), String> {
        let to = mail
            .to
            .parse::<Mailbox>()
            .map_err(|e| format!("not a mailbox: {e}"))?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&mail.subject);
        if let Some(url) = &mail.unsubscribe {
            use lettre::message::header::{HeaderName, HeaderValue};
            builder = builder
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe"),
                    format!("<{url}>"),
                ))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".into(),
                ));
        }
        let message = builder
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(mail.text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(html(&mail.text)),
                    ),
            )
            .map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Where mail goes.
#[derive(Clone)]
pub struct Mailer {
    smtp: Option<Arc<SmtpMailer>>,
    failures: prometheus::IntCounter,
}

impl Mailer {
    pub fn new(
        settings: &SmtpSettings,
        failures: prometheus::IntCounter,
    ) -> Result<Mailer, String> {
        let smtp = if settings.url.is_empty() {
            None
        } else {
            Some(Arc::new(SmtpMailer::new(settings)?))
        };
        Ok(Mailer { smtp, failures })
    }

    /// Whether mail really leaves (SMTP is configured).
    pub fn sends(&self) -> bool {
        self.smtp.is_some()
    }

    /// Sends now (twice if the first try fails); an error when it could not, or when there
    /// is no SMTP server.
    pub async fn send_now(&self, mail: &Mail) -> Result<(), String> {
        let Some(smtp) = &self.smtp else {
            return Err("no smtp.url".into());
        };
        match smtp.send(mail).await {
            Ok(()) => Ok(()),
            Err(_) => smtp.send(mail).await.inspect_err(|_| self.failures.inc()),
        }
    }

    /// Sends in the background; without SMTP, writes the mail to the log.
    pub fn send_later(&self, mail: Mail) {
        let Some(smtp) = self.smtp.clone() else {
            tracing::info!(
                to = %mail.to,
                subject = %mail.subject,
                text = %mail.text,
                "no smtp.url: this mail is not sent (development); its text is here"
            );
            return;
        };
        let failures = self.failures.clone();
        actix_web::rt::spawn(async move {
            // Two tries: a relay that drops one connection should not lose the mail.
            for attempt in 1..=2 {
                match smtp.send(&mail).await {
                    Ok(()) => {
                        tracing::info!(subject = %mail.subject, "mail sent");
                        return;
                    }
                    Err(e) if attempt == 2 => {
                        failures.inc();
                        tracing::warn!(error = %e, subject = %mail.subject, "cannot send mail");
                    }
                    Err(_) => {
                        actix_web::rt::time::sleep(std::time::Duration::from_secs(2)).await;
                    }
                }
            }
        });
    }
}

/// The text as HTML: escaped, with each URL a link.
fn html(text: &str) -> String {
    let mut out = String::from("<!doctype html><html><body><p>");
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            out.push_str("<br>\n");
        }
        for (j, word) in line.split(' ').enumerate() {
            if j > 0 {
                out.push(' ');
            }
            let escaped = crate::domain::escape_html(word);
            if word.starts_with("https://") || word.starts_with("http://") {
                out.push_str(&format!("<a href=\"{escaped}\">{escaped}</a>"));
            } else {
                out.push_str(&escaped);
            }
        }
    }
    out.push_str("</p></body></html>");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn html_escapes_the_text_and_links_its_urls() {
        let html = super::html("Hi <b>&\nOpen https://x.example/a?b=1&c=2 now");
        assert!(html.contains("Hi &lt;b&gt;&amp;<br>"), "{html}");
        assert!(
            html.contains("<a href=\"https://x.example/a?b=1&amp;c=2\">"),
            "{html}"
        );
    }
}
