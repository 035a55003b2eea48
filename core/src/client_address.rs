//! Who the client is, for every per-address limit: the TCP peer, or, when the peer is a trusted
//! reverse proxy (`server.trusted_proxies`), the address it forwarded (`Forwarded` or
//! `X-Forwarded-For`). A forwarded address from anyone else is ignored: it could be forged.

use std::net::IpAddr;

#[derive(Debug, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Addresses (`10.0.0.5`) or CIDR ranges (`10.0.0.0/8`, `fd00::/8`).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut nets = Vec::new();
        for entry in entries {
            let (address, length) = entry.split_once('/').map_or((entry.as_str(), None), |(a, l)| (a, Some(l)));
            let bad = || format!("`{entry}` is not an address or a CIDR range like 10.0.0.0/8");
            let ip: IpAddr = address.trim().parse().map_err(|_| bad())?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let length = match length {
                Some(l) => l.trim().parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(bad)?,
                None => max,
            };
            nets.push((ip, length));
        }
        Ok(Self(nets))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|(net, length)| match (net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*length)).unwrap_or(0);
                u32::from(*net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(*length)).unwrap_or(0);
                u128::from(*net) & mask == u128::from(ip) & mask
            }
            _ => false,
        })
    }

    /// The client's address: walking the forwarded chain from the nearest hop, the first one
    /// that is not a trusted proxy. `forwarded` and `x_forwarded_for` are the request's values
    /// of those headers, in order.
    pub fn client_address(&self, peer: IpAddr, forwarded: &[&str], x_forwarded_for: &[&str]) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        for hop in forwarded_chain(forwarded, x_forwarded_for).iter().rev() {
            match hop {
                Some(ip) if self.trusts(*ip) => client = *ip,
                Some(ip) => return *ip,
                // "unknown" or garbage: the proxy that passed it on is as far as we can see.
                None => return client,
            }
        }
        client
    }
}

/// The forwarded addresses, client first: `Forwarded: for=…` when present, else `X-Forwarded-For`.
fn forwarded_chain(forwarded: &[&str], x_forwarded_for: &[&str]) -> Vec<Option<IpAddr>> {
    let values = |headers: &[&str]| headers.iter().flat_map(|v| v.split(',')).map(str::trim).map(String::from).collect::<Vec<_>>();
    let forwarded = values(forwarded);
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .map(|element| {
                element
                    .split(';')
                    .find_map(|pair| pair.trim().strip_prefix("for=").or_else(|| pair.trim().strip_prefix("For=")))
                    .and_then(|value| parse_node(value.trim_matches('"')))
            })
            .collect();
    }
    values(x_forwarded_for).iter().map(|v| parse_node(v)).collect()
}

/// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711` or `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    node.parse::<IpAddr>().ok().or_else(|| node.rsplit_once(':')?.0.parse().ok()).map(|ip: IpAddr| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (`Forwarded`, `X-Forwarded-For`) values.
    fn headers<'a>(pairs: &[(&'static str, &'a str)]) -> (Vec<&'a str>, Vec<&'a str>) {
        let of = |name| pairs.iter().filter(|(n, _)| *n == name).map(|(_, v)| *v).collect();
        (of("forwarded"), of("x-forwarded-for"))
    }

    fn client(proxies: &TrustedProxies, peer: IpAddr, (forwarded, x_forwarded_for): &(Vec<&str>, Vec<&str>)) -> IpAddr {
        proxies.client_address(peer, forwarded, x_forwarded_for)
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into(), "fd00::1".into()]).unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        let forwarded = headers(&[("x-forwarded-for", "198.51.100.7, 10.0.0.2")]);
        assert_eq!(client(&proxies, proxy, &forwarded), "198.51.100.7".parse::<IpAddr>().unwrap(), "through two proxies");
        assert_eq!(client(&proxies, stranger, &forwarded), stranger, "a forged header from outside is ignored");
        let spoofed = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7")]);
        assert_eq!(client(&proxies, proxy, &spoofed), "198.51.100.7".parse::<IpAddr>().unwrap(), "the client's own claim is not believed");
        let standard = headers(&[("forwarded", r#"for="[2001:db8::5]:4711";proto=https, for=10.0.0.2"#)]);
        assert_eq!(client(&proxies, proxy, &standard), "2001:db8::5".parse::<IpAddr>().unwrap());
        assert_eq!(proxies.client_address(proxy, &[], &[]), proxy, "nothing forwarded: the proxy itself");
        assert!(TrustedProxies::parse(&["10.0.0.0/40".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.internal".into()]).is_err());
    }
}
