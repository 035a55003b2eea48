//! The API description (`/api/openapi.json`, `/api/docs`) against the routes the routers
//! register: every `/api` route and method is described, and nothing described is missing.

use std::collections::BTreeSet;
use switchboard_tests::TestServer;

/// `(method, path)` of every `/api` route in the crates' router code, read from the source.
fn registered_routes() -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for dir in ["../admin-web/src", "../admin-web/src/panel", "../channels/src", "../channels/src/webchat", "../channels/src/telegram"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let Some(start) = line.find(".route(\"/api/") else { continue };
                let rest = &line[start + ".route(\"".len()..];
                let route = &rest[..rest.find('"').unwrap()];
                if route == "/api/openapi.json" || route == "/api/docs" {
                    continue;
                }
                let handlers = &rest[route.len()..];
                for method in ["get", "post", "patch", "put", "delete"] {
                    let called = handlers.match_indices(&format!("{method}(")).any(|(at, _)| at == 0 || !handlers.as_bytes()[at - 1].is_ascii_alphanumeric() && handlers.as_bytes()[at - 1] != b'_');
                    if called {
                        found.insert((method.to_string(), route.to_string()));
                    }
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn every_api_route_is_described_and_the_description_is_served() {
    let server = TestServer::start().await;
    let document: serde_json::Value = reqwest::get(server.url("/api/openapi.json")).await.unwrap().json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let mut described = BTreeSet::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            assert!(operation["summary"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path} has no summary");
            assert!(operation["responses"]["default"].is_object(), "{method} {path} says nothing of errors");
            let declared: BTreeSet<&str> = operation["parameters"].as_array().unwrap().iter().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().unwrap()).collect();
            let in_path: BTreeSet<&str> = path.split('/').filter_map(|part| part.strip_prefix('{')?.strip_suffix('}')).collect();
            assert_eq!(declared, in_path, "{method} {path}: path parameters");
            described.insert((method.clone(), path.clone()));
        }
    }
    let registered = registered_routes();
    assert!(registered.len() > 40, "the route scan found too little: {registered:?}");
    let undescribed: Vec<_> = registered.difference(&described).collect();
    let unrouted: Vec<_> = described.difference(&registered).collect();
    assert!(undescribed.is_empty() && unrouted.is_empty(), "routes without a description: {undescribed:?}; descriptions without a route: {unrouted:?}");

    let page = reqwest::get(server.url("/api/docs")).await.unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    let page = page.text().await.unwrap();
    for (method, path) in &registered {
        assert!(page.contains(&format!("{} {}", method.to_uppercase(), path)), "the page lacks {method} {path}");
    }
}
