//! Whether gradio would let a request through its login (`--gradio-auth`, `--gradio-auth-path`).
//!
//! gradio guards `/file=` with its `login_check` dependency: a request without a session it
//! knows gets 401 before any path check. When the proxy serves a file itself it must not be
//! more generous, so it asks gradio the same question, `GET /login_check` with the client's
//! session cookie, and remembers the answer for a few seconds (gradio keeps sessions in memory
//! and never expires them, so a short cache only delays noticing a restart, which clears it).
//! A request gradio would refuse is simply forwarded, so the client gets gradio's own answer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, StatusCode};

use super::forward::Backend;

/// How long an answer from gradio is reused.
const TTL: Duration = Duration::from_secs(5);

/// At most this many sessions are remembered; a full cache is emptied of expired answers, and
/// dropped whole if that is not enough (the worst case is asking gradio again).
const CAPACITY: usize = 4096;

/// The cookies gradio 3.41 reads a session from, in its order of preference.
const SESSION_COOKIES: [&str; 2] = ["access-token", "access-token-unsecure"];

/// A short-lived cache of gradio's answers, keyed by session cookie.
#[derive(Debug, Default)]
pub struct Sessions {
    answers: Mutex<HashMap<String, (bool, Instant)>>,
}

impl Sessions {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets every answer: gradio restarted, and its sessions with it.
    pub fn clear(&self) {
        if let Ok(mut answers) = self.answers.lock() {
            answers.clear();
        }
    }

    /// True when gradio accepts the session carried by `headers` (or needs none).
    pub async fn accepts(&self, backend: &Backend, headers: &HeaderMap) -> bool {
        let session = session_cookie(headers);
        let key = session
            .as_ref()
            .map(|(name, value)| format!("{name}={value}"))
            .unwrap_or_default();
        if let Some(answer) = self.cached(&key) {
            return answer;
        }
        let answer = ask_gradio(backend, &key).await;
        self.remember(key, answer);
        answer
    }

    fn cached(&self, key: &str) -> Option<bool> {
        let answers = self.answers.lock().ok()?;
        let (answer, at) = answers.get(key)?;
        (at.elapsed() < TTL).then_some(*answer)
    }

    fn remember(&self, key: String, answer: bool) {
        let Ok(mut answers) = self.answers.lock() else {
            return;
        };
        if answers.len() >= CAPACITY {
            answers.retain(|_, (_, at)| at.elapsed() < TTL);
            if answers.len() >= CAPACITY {
                answers.clear();
            }
        }
        answers.insert(key, (answer, Instant::now()));
    }
}

/// gradio's session cookie from the request, as `(name, value)`, in gradio's order.
fn session_cookie(headers: &HeaderMap) -> Option<(&'static str, String)> {
    let pairs: Vec<(&str, &str)> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.trim(), value.trim()))
        .collect();
    SESSION_COOKIES.iter().find_map(|wanted| {
        // starlette keeps the last of repeated cookies.
        pairs
            .iter()
            .rev()
            .find(|(name, value)| name == wanted && !value.is_empty())
            .map(|(_, value)| (*wanted, (*value).to_owned()))
    })
}

async fn ask_gradio(backend: &Backend, cookie: &str) -> bool {
    let Ok(uri) = backend.uri("/login_check") else {
        return false;
    };
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = uri;
    if let Ok(host) = HeaderValue::from_str(&backend.addr().to_string()) {
        request.headers_mut().insert(header::HOST, host);
    }
    if !cookie.is_empty() {
        match HeaderValue::from_str(cookie) {
            Ok(value) => {
                request.headers_mut().insert(header::COOKIE, value);
            }
            Err(_) => return false,
        }
    }
    match backend.send(request).await {
        Ok(response) => {
            let accepted = response.status() == StatusCode::OK;
            tracing::debug!(status = %response.status(), accepted, "gradio session check");
            accepted
        }
        Err(err) => {
            tracing::debug!(error = %err, "gradio session check failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookie_prefers_gradios_first_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; access-token-unsecure=u; access-token=s"),
        );
        assert_eq!(
            session_cookie(&headers),
            Some(("access-token", "s".to_owned()))
        );
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("access-token-unsecure=u"),
        );
        assert_eq!(
            session_cookie(&headers),
            Some(("access-token-unsecure", "u".to_owned()))
        );
        headers.insert(header::COOKIE, HeaderValue::from_static("other=1"));
        assert_eq!(session_cookie(&headers), None);
    }
}
