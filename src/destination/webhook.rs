//! The signed webhook: one HTTPS POST of the notification's JSON document, signed like Stripe's
//! (`Chat-Notifier-Signature: t=TIMESTAMP,v1=HEX`, an HMAC-SHA256 of `TIMESTAMP.BODY` under
//! the destination's secret), with an `Idempotency-Key` that is the same on every try. A 2xx is
//! delivered; 429 asks for room and 5xx says the receiver is down (neither counts as an attempt,
//! `Retry-After` honoured); any other answer, a redirect included (never followed), is this
//! notification refused, counted toward `max_attempts`.

use anyhow::Result;
use chrono::Utc;

use super::http;
use super::{Destination, Failure, Outgoing, Sent, hex, hmac_sha256, retry_after};
use crate::config::{DestinationConfig, DestinationKind};

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Chat-Notifier-Signature";

pub struct Webhook {
    name: String,
    endpoint: http::Endpoint,
    secret: String,
}

/// `t=TIMESTAMP,v1=HEX`: the signature of `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let signed = format!("{timestamp}.{body}");
    format!("t={timestamp},v1={}", hex(&hmac_sha256(secret.as_bytes(), signed.as_bytes())))
}

/// The headers a notification goes with, the signature's aside.
fn headers(n: &Outgoing) -> Vec<(&'static str, String)> {
    vec![("Idempotency-Key", n.key.to_owned()), ("Chat-Notifier-Event", super::event(n))]
}

/// What `run --dry-run` shows: the headers and the exact body, the signature left out (it
/// depends on the moment and the secret).
pub fn preview(n: &Outgoing) -> String {
    let mut out = String::from("POST (the URL from url_env / url_file)\n");
    for (name, value) in headers(n) {
        out.push_str(&format!("{name}: {value}\n"));
    }
    out.push_str(&format!("{SIGNATURE_HEADER}: t=<time sent>,v1=<HMAC-SHA256 of time.body>\n\n{}\n", n.document));
    out
}

impl Webhook {
    fn post(&mut self, n: &Outgoing) -> Result<Sent, Failure> {
        let now = Utc::now();
        let mut headers = headers(n);
        let signed = signature(&self.secret, now.timestamp(), n.document);
        // What the server may echo: the URL's path, the secret, this request's signature (whole,
        // and its HMAC alone).
        let mut secrets = self.endpoint.secrets.clone();
        secrets.add(&self.secret);
        secrets.add(&signed);
        secrets.add(signed.rsplit("v1=").next().unwrap_or_default());
        headers.push((SIGNATURE_HEADER, signed));
        let shown = self.endpoint.url.shown();
        let sent = match http::post(
            &self.endpoint.url,
            &headers,
            n.document.as_bytes(),
            self.endpoint.timeout,
            &self.endpoint.tls,
        ) {
            Ok(r) if (200..300).contains(&r.status) => Ok(Sent::default()),
            Ok(r) => {
                let said = r.said(&secrets);
                let reason = format!(
                    "{shown} answered {}{}",
                    r.status,
                    if said.is_empty() { String::new() } else { format!(": {said}") }
                );
                let retry = retry_after(r.header("retry-after"), now);
                Err(match r.status {
                    429 => Failure::Throttled { reason, retry_after: retry },
                    500..=599 => Failure::Unavailable { reason, retry_after: retry },
                    300..=399 => Failure::Rejected(format!(
                        "{shown} answered {} (a redirect, not followed: give the URL it points to)",
                        r.status
                    )),
                    _ => Failure::Rejected(reason),
                })
            }
            Err(http::Error::Unreachable(e)) => {
                Err(Failure::Unavailable { reason: format!("{shown}: {e}"), retry_after: None })
            }
            Err(http::Error::Lost(e)) => Err(Failure::Lost(format!("{shown}: {e}"))),
        };
        sent.map_err(|failure| failure.masked(&secrets))
    }

    pub fn open(config: &DestinationConfig) -> Result<Self> {
        Ok(Webhook {
            name: config.name.clone(),
            endpoint: http::Endpoint::open(config)?,
            secret: config.secret("secret")?,
        })
    }
}

impl Destination for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> DestinationKind {
        DestinationKind::Webhook
    }

    fn send(&mut self, n: &Outgoing) -> Result<Result<Sent, Failure>> {
        Ok(self.post(n))
    }

    fn check(&mut self) -> Result<String> {
        self.endpoint.probe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python's hmac module computes the same (the README's example).
    #[test]
    fn the_signature_is_pinned() {
        assert_eq!(
            signature("whsec_test", 1_790_000_000, "{\"version\":1}"),
            "t=1790000000,v1=b07aa372b1930f0ff12895229d4195d8eec8ef210870b37d0d8ead6f8cb59431"
        );
    }
}
