//! Who the client is, for the per-address limits on sign-in: see `TrustedProxies`.

use axum::http::HeaderMap;
use std::net::IpAddr;
use switchboard_core::TrustedProxies;

pub fn client_address(proxies: &TrustedProxies, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let values = |name: &str| headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
    proxies.client_address(peer, &values("forwarded"), &values("x-forwarded-for"))
}
