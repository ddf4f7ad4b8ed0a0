//! Name resolution: the [`Resolver`] seam, its system and static implementations, and the DNS
//! hook that filters every answer before the connector sees it.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::EgressError;
use crate::ip::is_forbidden_ip;
use crate::policy::EgressPolicy;

/// A boxed, sendable future (what [`Resolver::resolve`] returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Turns a host name into socket addresses.
///
/// The client's DNS hook calls this for every connection to a host name and filters the answer;
/// it learns only the name from the connector, so it asks with `port` 0 and the connector applies
/// the URL's port (or, for an answer that names an exception, the exception's own port).
pub trait Resolver: Send + Sync {
    /// The addresses of `host`, each carrying `port` unless the resolver knows better.
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>>;
}

/// The operating system's resolver (`getaddrinfo` through [`tokio::net::lookup_host`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// A fixed host → addresses table.
///
/// For tests: no DNS server answering for provider domains can run in a test, so a test names
/// the answers it needs (`files.allowed.test` → `10.0.0.5`) and the filter's decision on them is
/// what the test observes. An address with port 0 takes the requested port; a non-zero port is
/// kept, so a name can point at a loopback test server registered as an exception. Host names
/// are matched case-insensitively, a trailing dot ignored.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    table: HashMap<String, Vec<SocketAddr>>,
}

impl StaticResolver {
    /// An empty table: every name is unknown.
    pub fn new() -> StaticResolver {
        StaticResolver::default()
    }

    /// Adds (or replaces) the answer for `host`.
    pub fn with(mut self, host: &str, addrs: impl IntoIterator<Item = SocketAddr>) -> StaticResolver {
        self.table.insert(normalise(host), addrs.into_iter().collect());
        self
    }
}

impl Resolver for StaticResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        let answer = match self.table.get(&normalise(host)) {
            Some(addrs) => Ok(addrs
                .iter()
                .map(|addr| if addr.port() == 0 { SocketAddr::new(addr.ip(), port) } else { *addr })
                .collect()),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no such host in the static table")),
        };
        Box::pin(std::future::ready(answer))
    }
}

fn normalise(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// The client's DNS hook: resolves through the [`Resolver`], keeps only addresses that may be
/// connected to, and fails with [`EgressError::ForbiddenAddress`] when none remain. The connector
/// connects to exactly the addresses returned here.
pub(crate) struct GuardedResolve {
    policy: Arc<EgressPolicy>,
    resolver: Arc<dyn Resolver>,
}

impl GuardedResolve {
    pub(crate) fn new(policy: Arc<EgressPolicy>, resolver: Arc<dyn Resolver>) -> GuardedResolve {
        GuardedResolve { policy, resolver }
    }
}

impl reqwest::dns::Resolve for GuardedResolve {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let resolver = self.resolver.clone();
        Box::pin(async move {
            let host = name.as_str();
            // The URL check already ran for this host; checking again here covers any path to the
            // connector that did not pass through it.
            if !policy.allows_domain(host) {
                return Err(Box::new(EgressError::DomainNotAllowed { host: host.to_owned() }) as _);
            }
            let answer = resolver.resolve(host, 0).await?;
            if answer.is_empty() {
                return Err(Box::new(io::Error::new(io::ErrorKind::NotFound, "the name has no addresses")) as _);
            }
            let admitted = admit(&policy, answer);
            if admitted.is_empty() {
                return Err(Box::new(EgressError::ForbiddenAddress { host: host.to_owned() }) as _);
            }
            Ok(Box::new(admitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The addresses of an answer that may be connected to, in the answer's order: exact exceptions
/// as they are, other addresses only outside the forbidden ranges and with port 0, so the
/// connector uses the URL's port.
fn admit(policy: &EgressPolicy, answer: Vec<SocketAddr>) -> Vec<SocketAddr> {
    answer
        .into_iter()
        .filter_map(|addr| {
            if policy.is_exception(addr.ip(), addr.port()) {
                Some(addr)
            } else if is_forbidden_ip(addr.ip()) {
                None
            } else {
                Some(SocketAddr::new(addr.ip(), 0))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use reqwest::dns::Resolve;

    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn hook(policy: EgressPolicy, resolver: StaticResolver) -> GuardedResolve {
        GuardedResolve::new(Arc::new(policy), Arc::new(resolver))
    }

    async fn answer(hook: &GuardedResolve, host: &str) -> Result<Vec<SocketAddr>, String> {
        let name: reqwest::dns::Name = host.parse().unwrap();
        match hook.resolve(name).await {
            Ok(addrs) => Ok(addrs.collect()),
            Err(err) => Err(err.downcast_ref::<EgressError>().map_or_else(|| err.to_string(), |e| e.code().to_owned())),
        }
    }

    #[tokio::test]
    async fn a_mixed_answer_keeps_only_the_public_addresses() {
        let resolver = StaticResolver::new().with(
            "mixed.allowed.test",
            [
                addr("10.0.0.5:0"),
                addr("93.184.215.14:0"),
                addr("169.254.169.254:0"),
                addr("[::1]:0"),
                addr("[2606:4700::1]:0"),
            ],
        );
        let hook = hook(EgressPolicy::for_domains(&["allowed.test"]), resolver);
        assert_eq!(
            answer(&hook, "mixed.allowed.test").await,
            Ok(vec![addr("93.184.215.14:0"), addr("[2606:4700::1]:0")])
        );
    }

    #[tokio::test]
    async fn an_all_private_answer_is_a_forbidden_address_error() {
        let resolver = StaticResolver::new()
            .with("db.allowed.test", [addr("10.0.0.5:0")])
            .with("lo.allowed.test", [addr("127.0.0.1:5432"), addr("[::ffff:127.0.0.1]:0"), addr("[fe80::1]:0")]);
        let hook = hook(EgressPolicy::for_domains(&["allowed.test"]), resolver);
        assert_eq!(answer(&hook, "db.allowed.test").await, Err("egress_forbidden_address".to_owned()));
        assert_eq!(answer(&hook, "lo.allowed.test").await, Err("egress_forbidden_address".to_owned()));
    }

    #[tokio::test]
    async fn exceptions_pass_the_filter_only_with_their_exact_port() {
        let exception = addr("127.0.0.1:4000");
        let resolver = StaticResolver::new()
            .with("api.allowed.test", [addr("127.0.0.1:4001"), exception])
            .with("other.allowed.test", [addr("127.0.0.1:0")]);
        let hook = hook(EgressPolicy::for_domains(&["allowed.test"]).with_exception(exception), resolver);
        assert_eq!(answer(&hook, "api.allowed.test").await, Ok(vec![exception]));
        assert_eq!(answer(&hook, "other.allowed.test").await, Err("egress_forbidden_address".to_owned()));
    }

    #[tokio::test]
    async fn the_hook_refuses_a_name_off_the_allow_list_without_resolving_it() {
        let resolver = StaticResolver::new().with("evil.example", [addr("93.184.215.14:0")]);
        let hook = hook(EgressPolicy::for_domains(&["allowed.test"]), resolver);
        assert_eq!(answer(&hook, "evil.example").await, Err("egress_domain_not_allowed".to_owned()));
    }

    #[tokio::test]
    async fn the_static_resolver_fills_in_the_port_and_matches_names_loosely() {
        let resolver = StaticResolver::new().with("Api.Allowed.Test.", [addr("10.0.0.5:0"), addr("127.0.0.1:9")]);
        assert_eq!(
            resolver.resolve("api.allowed.test", 443).await.unwrap(),
            vec![addr("10.0.0.5:443"), addr("127.0.0.1:9")]
        );
        assert_eq!(resolver.resolve("API.allowed.test.", 80).await.unwrap()[0], addr("10.0.0.5:80"));
        assert_eq!(resolver.resolve("unknown.test", 80).await.unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
