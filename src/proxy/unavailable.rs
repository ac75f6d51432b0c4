//! The answer while gradio cannot take requests: starting, restarting or stopping.
//!
//! The public port is open from the first moment (so "port in use" fails early and a browser
//! tab opened by the launcher never sees a connection error), but nothing may reach gradio
//! before the webui's app-started point: upstream crashes on a request that arrives between
//! `demo.launch()` and its middleware setup. Until then every request gets a small 503 — a
//! page that reloads itself for browsers, JSON for API clients — with `Retry-After`.

use axum::body::Body;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

/// Seconds a client should wait before retrying; also the page's refresh interval.
const RETRY_SECONDS: &str = "2";

/// Why gradio is not available, for the wording of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Before the webui's first app-started point.
    Starting,
    /// Restarting or shutting down (or gradio's port refused a connection).
    Stopping,
}

impl Reason {
    fn sentence(self) -> &'static str {
        match self {
            Reason::Starting => "Stable Diffusion web UI is starting.",
            Reason::Stopping => "Stable Diffusion web UI is restarting or stopping.",
        }
    }
}

/// The 503 response for a request to `path` (already without the subpath prefix).
pub fn response(reason: Reason, headers: &HeaderMap, path: &str) -> Response<Body> {
    let (content_type, body) = if wants_json(headers, path) {
        let body = serde_json::json!({
            "error": "ServiceUnavailable",
            "detail": format!("{} Retry in a few seconds.", reason.sentence()),
        });
        ("application/json", body.to_string())
    } else {
        ("text/html; charset=utf-8", page(reason))
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let response_headers = response.headers_mut();
    response_headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response_headers.insert(RETRY_AFTER, HeaderValue::from_static(RETRY_SECONDS));
    response_headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn page(reason: Reason) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{RETRY_SECONDS}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Stable Diffusion web UI</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:4rem auto;max-width:32rem;\
         color:#444;text-align:center}}</style></head>\n<body><h1>One moment…</h1>\
         <p>{}</p><p>This page reloads by itself.</p></body></html>\n",
        reason.sentence()
    )
}

/// JSON for the webui's API (`/sdapi/`) and for clients whose `Accept` ranks JSON above HTML.
fn wants_json(headers: &HeaderMap, path: &str) -> bool {
    if path.starts_with("/sdapi/") {
        return true;
    }
    let mut json = 0.0_f32;
    let mut html = 0.0_f32;
    for value in headers.get_all(ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let quality = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if media == "application/json" || media.ends_with("+json") {
                json = json.max(quality);
            } else if media == "text/html" || media == "application/xhtml+xml" {
                html = html.max(quality);
            }
        }
    }
    json > 0.0 && json > html
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn browsers_get_html_and_api_clients_json() {
        let browser = accept("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8");
        assert!(!wants_json(&browser, "/"));
        assert!(wants_json(&accept("application/json"), "/"));
        assert!(wants_json(
            &accept("application/json, text/html;q=0.5"),
            "/"
        ));
        assert!(!wants_json(&accept("*/*"), "/config"));
        assert!(wants_json(&HeaderMap::new(), "/sdapi/v1/txt2img"));
    }
}
