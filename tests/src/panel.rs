//! A signed-in panel user over plain HTTP: keeps the session cookie and the page's CSRF token.

use reqwest::redirect::Policy;
use reqwest::{Client, StatusCode};

pub struct PanelClient {
    http: Client,
    base: String,
    cookie: Option<String>,
    pub csrf: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub location: Option<String>,
    pub retry_after: Option<String>,
    /// The cookies it set, as `name=value`.
    pub cookies: Vec<String>,
    pub body: String,
}

fn cookie_from(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.starts_with(&format!("{name}=")))
        .map(String::from)
}

/// The value of the first hidden `csrf` input on a page.
pub fn csrf_of(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(html[at..].split('"').next()?.to_string())
}

impl PanelClient {
    pub fn anonymous(base: &str) -> Self {
        Self { http: Client::builder().redirect(Policy::none()).build().unwrap(), base: base.into(), cookie: None, csrf: String::new() }
    }

    /// Connects from this local address (e.g. 127.0.0.7), to act as another client.
    pub fn anonymous_from(base: &str, address: std::net::IpAddr) -> Self {
        let http = Client::builder().redirect(Policy::none()).local_address(address).build().unwrap();
        Self { http, base: base.into(), cookie: None, csrf: String::new() }
    }

    /// The session cookie, to replay it later as an old browser would.
    pub fn session_cookie(&self) -> Option<String> {
        self.cookie.clone()
    }

    pub fn with_session_cookie(base: &str, cookie: String) -> Self {
        let mut client = Self::anonymous(base);
        client.cookie = Some(cookie);
        client
    }

    /// Signs in through the login form; panics with the page on failure.
    pub async fn sign_in(base: &str, email: &str, password: &str) -> Self {
        Self::signed_in(Self::anonymous(base), email, password).await
    }

    /// Signs in over HTTPS (a proxy in front), trusting the certificates `ca_pem` signed.
    pub async fn sign_in_trusting(base: &str, ca_pem: &[u8], email: &str, password: &str) -> Self {
        let ca = reqwest::Certificate::from_pem(ca_pem).expect("a PEM certificate");
        let http = Client::builder().redirect(Policy::none()).add_root_certificate(ca).build().unwrap();
        Self::signed_in(Self { http, base: base.into(), cookie: None, csrf: String::new() }, email, password).await
    }

    async fn signed_in(mut client: Self, email: &str, password: &str) -> Self {
        let reply = client.try_sign_in(email, password).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "sign-in failed: {}", reply.body);
        let dashboard = client.get("/panel/").await;
        client.csrf = csrf_of(&dashboard.body).expect("a CSRF token on the dashboard");
        client
    }

    /// After a sign-in that asked for a code: sends `code` with the challenge and form cookies
    /// the code page set, and keeps the session when it signs in.
    pub async fn try_code(&mut self, code_page: &Reply, code: &str) -> Reply {
        let csrf = csrf_of(&code_page.body).expect("the code form's CSRF field");
        self.signing_in("/panel/login/code", &code_page.cookies.join("; "), &[("code", code), ("csrf", &csrf)]).await
    }

    /// Posts a sign-in form with `cookies`; keeps the session it may begin.
    async fn signing_in(&mut self, path: &str, cookies: &str, form: &[(&str, &str)]) -> Reply {
        let response = self.http.post(format!("{}{path}", self.base)).header("cookie", cookies).form(form).send().await.unwrap();
        if let Some(session) = cookie_from(&response, "sb_session") {
            self.cookie = Some(session);
        }
        Self::reply(response).await
    }

    pub async fn try_sign_in(&mut self, email: &str, password: &str) -> Reply {
        let page = self.http.get(format!("{}/panel/login", self.base)).send().await.unwrap();
        let login_cookie = cookie_from(&page, "sb_login_csrf").expect("login CSRF cookie");
        let csrf = csrf_of(&page.text().await.unwrap()).expect("login CSRF field");
        self.signing_in("/panel/login", &login_cookie, &[("email", email), ("password", password), ("csrf", &csrf)]).await
    }

    async fn reply(response: reqwest::Response) -> Reply {
        Reply {
            status: response.status(),
            location: response.headers().get("location").and_then(|v| v.to_str().ok()).map(String::from),
            retry_after: response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(String::from),
            cookies: response
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok()?.split(';').next().map(String::from))
                .collect(),
            body: response.text().await.unwrap_or_default(),
        }
    }

    /// Creates a personal API token on the tokens page and reads it from the page (shown once).
    pub async fn new_api_token(&self, name: &str) -> String {
        let created = self.post("/panel/account/tokens", &[("name", name)]).await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.body);
        let html = &created.body;
        let at = html.find("data-test=\"new-token\"").expect("the token is shown once");
        html[at..].split(|c: char| !c.is_ascii_hexdigit()).find(|w| w.len() == 64).expect("token").to_string()
    }

    pub async fn get(&self, path: &str) -> Reply {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        Self::reply(request.send().await.unwrap()).await
    }

    /// Posts a form with this session's CSRF token added.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf", &self.csrf));
        self.post_raw(path, &form).await
    }

    /// Posts exactly these fields (no CSRF token added).
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let mut request = self.http.post(format!("{}{path}", self.base)).form(fields);
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        Self::reply(request.send().await.unwrap()).await
    }
}

/// A server-sent events stream of a signed-in page.
pub struct EventStream {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl EventStream {
    /// The next `data:` line.
    pub async fn next_event(&mut self) -> anyhow::Result<String> {
        use futures::StreamExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) {
                    return Ok(data.trim().to_string());
                }
                continue;
            }
            let chunk = self.body.next().await.ok_or_else(|| anyhow::anyhow!("event stream closed"))??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Reads and drops whatever arrives within `window`.
    pub async fn drain_for(&mut self, window: std::time::Duration) {
        let _ = tokio::time::timeout(window, async {
            loop {
                if self.next_event().await.is_err() {
                    break;
                }
            }
        })
        .await;
    }
}

impl PanelClient {
    pub async fn event_stream(&self, path: &str) -> EventStream {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.expect("event stream");
        assert_eq!(response.status(), StatusCode::OK, "event stream refused");
        EventStream { body: Box::pin(response.bytes_stream()), buffer: String::new() }
    }
}

/// The JSON API with an agent's API token.
pub struct ApiClient {
    base: String,
    token: String,
    http: Client,
}

impl ApiClient {
    /// `base` is the server's URL with no path.
    pub fn new(base: String, token: String) -> Self {
        Self { base: base.trim_end_matches('/').to_string(), token, http: Client::new() }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// GET `path`, which must answer 200 with JSON.
    pub async fn get(&self, path: &str) -> serde_json::Value {
        let reply = self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await.unwrap();
        assert_eq!(reply.status(), StatusCode::OK, "GET {path}");
        reply.json().await.unwrap()
    }

    /// POST `body` as JSON: the status and the JSON answer (null when it has none).
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (StatusCode, serde_json::Value) {
        let reply = self.http.post(format!("{}{path}", self.base)).bearer_auth(&self.token).json(&body).send().await.unwrap();
        (reply.status(), reply.json().await.unwrap_or(serde_json::Value::Null))
    }
}
