//! The IP and CIDR functions of Kubernetes' CEL library (`k8s.io/apiserver/pkg/cel/library`
//! `ip.go`, `cidr.go`), with the same names and meaning, so rules port over. Values are
//! strings here (CEL has no opaque types in this runtime): `ip(s)` and `cidr(s)` check
//! and normalise them, and the member functions read them.
//!
//! - `ip(string)`, `isIP(string)`; `<ip>.family()` (4 or 6), `.isLoopback()`,
//!   `.isUnspecified()`, `.isLinkLocalUnicast()`, `.isGlobalUnicast()`.
//! - `cidr(string)`, `isCIDR(string)`; `<cidr>.containsIP(ip|string)`,
//!   `<cidr>.containsCIDR(cidr|string)`, `<cidr>.ip()` (its address as written),
//!   `<cidr>.prefixLength()`.
//!
//! As in Kubernetes, an IPv4-mapped IPv6 address and an address with a zone are not IPs.
//! Literal arguments of `ip()` and `cidr()` are checked when the configuration loads.

use std::net::IpAddr;
use std::sync::Arc;

use cel::common::ast::IdedExpr;

use super::scan::{each_call, string_literal};
use cel::extractors::This;
use cel::{Context, ExecutionError, FunctionContext, Value};
use ipnet::IpNet;

/// An IP as Kubernetes accepts one.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let ip: IpAddr = s.parse().ok()?;
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => None,
        ip => Some(ip),
    }
}

/// A CIDR as Kubernetes accepts one: an IP (not IPv4-mapped) and a prefix length.
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    let (addr, _) = s.split_once('/')?;
    parse_ip(addr)?;
    s.parse().ok()
}

fn bad(name: &str, what: &str) -> ExecutionError {
    ExecutionError::function_error(name, format!("invalid {what}"))
}

fn ip_of(name: &str, s: &str) -> Result<IpAddr, ExecutionError> {
    parse_ip(s).ok_or_else(|| bad(name, "IP address"))
}

fn cidr_of(name: &str, s: &str) -> Result<IpNet, ExecutionError> {
    parse_cidr(s).ok_or_else(|| bad(name, "CIDR"))
}

/// `ip(s)`: `s` checked and normalised; `<cidr>.ip()`: the CIDR's address.
fn ip(ftx: &FunctionContext, This(s): This<Arc<String>>) -> Result<Value, ExecutionError> {
    let text = if ftx.this.is_some() {
        cidr_of("ip", &s)?.addr().to_string()
    } else {
        ip_of("ip", &s)?.to_string()
    };
    Ok(Value::String(Arc::new(text)))
}

/// Registers every function on `ctx`.
pub(super) fn register(ctx: &mut Context<'static, 'static>) {
    // None of these names is declared by the environment: registration cannot fail.
    let _ = ctx.add_function("ip", ip);
    let _ = ctx.add_function("isIP", |This(s): This<Arc<String>>| parse_ip(&s).is_some());
    let _ = ctx.add_function(
        "cidr",
        |This(s): This<Arc<String>>| -> Result<Value, ExecutionError> {
            let n = cidr_of("cidr", &s)?;
            Ok(Value::String(Arc::new(format!(
                "{}/{}",
                n.addr(),
                n.prefix_len()
            ))))
        },
    );
    let _ = ctx.add_function("isCIDR", |This(s): This<Arc<String>>| {
        parse_cidr(&s).is_some()
    });
    let _ = ctx.add_function(
        "containsIP",
        |This(c): This<Arc<String>>, ip: Arc<String>| -> Result<bool, ExecutionError> {
            Ok(cidr_of("containsIP", &c)?.contains(&ip_of("containsIP", &ip)?))
        },
    );
    let _ = ctx.add_function(
        "containsCIDR",
        |This(c): This<Arc<String>>, other: Arc<String>| -> Result<bool, ExecutionError> {
            Ok(cidr_of("containsCIDR", &c)?.contains(&cidr_of("containsCIDR", &other)?))
        },
    );
    let _ = ctx.add_function(
        "prefixLength",
        |This(c): This<Arc<String>>| -> Result<i64, ExecutionError> {
            Ok(i64::from(cidr_of("prefixLength", &c)?.prefix_len()))
        },
    );
    register_ip_members(ctx);
}

fn register_ip_members(ctx: &mut Context<'static, 'static>) {
    let _ = ctx.add_function(
        "family",
        |This(s): This<Arc<String>>| -> Result<i64, ExecutionError> {
            Ok(if ip_of("family", &s)?.is_ipv4() { 4 } else { 6 })
        },
    );
    let _ = ctx.add_function(
        "isLoopback",
        |This(s): This<Arc<String>>| -> Result<bool, ExecutionError> {
            Ok(ip_of("isLoopback", &s)?.is_loopback())
        },
    );
    let _ = ctx.add_function(
        "isUnspecified",
        |This(s): This<Arc<String>>| -> Result<bool, ExecutionError> {
            Ok(ip_of("isUnspecified", &s)?.is_unspecified())
        },
    );
    let _ = ctx.add_function(
        "isLinkLocalUnicast",
        |This(s): This<Arc<String>>| -> Result<bool, ExecutionError> {
            Ok(match ip_of("isLinkLocalUnicast", &s)? {
                IpAddr::V4(v4) => v4.is_link_local(),
                IpAddr::V6(v6) => v6.is_unicast_link_local(),
            })
        },
    );
    let _ = ctx.add_function(
        "isGlobalUnicast",
        |This(s): This<Arc<String>>| -> Result<bool, ExecutionError> {
            Ok(global_unicast(ip_of("isGlobalUnicast", &s)?))
        },
    );
}

/// Go's `netip.Addr.IsGlobalUnicast`: not unspecified, loopback, multicast, link-local,
/// nor (IPv4) the limited broadcast address. Private ranges are global unicast.
fn global_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_multicast()
                || v4.is_link_local()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unicast_link_local())
        }
    }
}

/// The literal arguments of `ip()` and `cidr()` calls (free-function form), to be checked
/// when the configuration loads: `(function, literal)`.
pub(super) fn literal_args(e: &IdedExpr, out: &mut Vec<(&'static str, String)>) {
    each_call(e, &mut |call| {
        let name = match call.func_name.as_str() {
            "ip" if call.target.is_none() => "ip",
            "cidr" if call.target.is_none() => "cidr",
            _ => return,
        };
        out.extend(string_literal(call.args.first()).map(|s| (name, s)));
    });
}

/// Whether a literal argument is valid for its function.
pub(super) fn literal_ok(function: &str, literal: &str) -> bool {
    match function {
        "ip" => parse_ip(literal).is_some(),
        _ => parse_cidr(literal).is_some(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::Cel;

    /// Kubernetes' IP and CIDR library, case by case (each true; its twin false or an
    /// error where Kubernetes refuses the value).
    #[test]
    fn kubernetes_ip_and_cidr_functions() {
        let cel = Cel::new();
        let ctx = cel.context();
        let eval = |src: &str| cel.compile(src, &[]).map(|e| e.eval_bool(&ctx));
        for src in [
            "isIP('192.0.2.1') && isIP('2001:db8::1')",
            "!isIP('1.2.3') && !isIP('::ffff:1.2.3.4') && !isIP('fe80::1%eth0')",
            "isCIDR('10.0.0.0/8') && !isCIDR('10.0.0.0') && !isCIDR('10.0.0.0/33')",
            "cidr('10.0.0.0/8').containsIP('10.1.2.3')",
            "!cidr('10.0.0.0/8').containsIP('11.0.0.1')",
            "cidr('10.0.0.0/8').containsIP(ip('10.9.9.9'))",
            "cidr('10.0.0.0/8').containsCIDR('10.1.0.0/16')",
            "!cidr('10.1.0.0/16').containsCIDR('10.0.0.0/8')",
            "cidr('2001:db8::/32').containsIP('2001:db8:1::7')",
            "!cidr('2001:db8::/32').containsIP('10.0.0.1')",
            "cidr('192.168.0.1/24').ip() == '192.168.0.1'",
            "cidr('10.0.0.0/8').prefixLength() == 8",
            "ip('192.0.2.1').family() == 4 && ip('2001:db8::1').family() == 6",
            "ip('127.0.0.1').isLoopback() && ip('::1').isLoopback()",
            "!ip('10.0.0.1').isLoopback()",
            "ip('0.0.0.0').isUnspecified() && ip('::').isUnspecified()",
            "ip('169.254.1.1').isLinkLocalUnicast() && ip('fe80::1').isLinkLocalUnicast()",
            "ip('10.0.0.1').isGlobalUnicast() && ip('8.8.8.8').isGlobalUnicast()",
            "!ip('127.0.0.1').isGlobalUnicast() && !ip('224.0.0.1').isGlobalUnicast()",
            "ip('2001:DB8::1') == '2001:db8::1'",
        ] {
            assert_eq!(eval(src).unwrap(), Ok(true), "{src}");
        }
        // A value that is not an IP or CIDR at run time is an error (the rule then
        // counts as not matching, and is reported).
        let e = cel
            .compile("cidr('10.0.0.0/8').containsIP(x)", &["x"])
            .unwrap();
        let mut c = cel.context();
        c.add_variable_from_value("x", "not-an-ip".to_owned());
        assert!(e.eval_bool(&c).is_err());
    }

    #[test]
    fn literal_addresses_are_checked_at_load() {
        let cel = Cel::new();
        for bad in [
            "cidr('10.0.0.0/33').containsIP(x)",
            "cidr('10.0.0.0').containsIP(x)",
            "ip('300.1.1.1').isLoopback()",
            "ip('::ffff:1.2.3.4').isLoopback()",
        ] {
            let err = cel.compile(bad, &["x"]).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains("literal")),
                "{bad}: {err:?}"
            );
        }
        assert!(
            cel.compile("cidr('10.0.0.0/8').containsIP(x)", &["x"])
                .is_ok()
        );
        assert!(cel.compile("ip('10.0.0.1').isLoopback()", &[]).is_ok());
    }
}
