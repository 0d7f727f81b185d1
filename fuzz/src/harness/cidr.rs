//! `dynpage_predeploy_allow` networks: `Cidr::parse` against `std`'s address parser and the
//! documented rules (prefix 0..=max without sign, no host bits), its canonical form read back
//! to the same network, `contains` against a bit-by-bit model (IPv4-mapped IPv6 addresses
//! being their IPv4), `AllowList::allows`, `ip_from_octets`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dynpage_core::cidr::{ip_from_octets, AllowList, Cidr};

use crate::driver::{Case, Check};
use crate::ensure;
use crate::gen;
use crate::rng::Rng;

fn v4(rng: &mut Rng) -> Ipv4Addr {
    match rng.below(4) {
        0 => Ipv4Addr::from(rng.next_u64() as u32),
        1 => Ipv4Addr::new(10, 0, 0, rng.byte()),
        2 => Ipv4Addr::new(192, 168, rng.byte(), rng.byte()),
        _ => rng.pick(&[
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            Ipv4Addr::LOCALHOST,
        ]),
    }
}

fn v6(rng: &mut Rng) -> Ipv6Addr {
    match rng.below(5) {
        0 => Ipv6Addr::from(u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())),
        1 => v4(rng).to_ipv6_mapped(),
        2 => Ipv6Addr::new(
            0x2001,
            0xdb8,
            rng.byte().into(),
            0,
            0,
            0,
            0,
            rng.byte().into(),
        ),
        3 => v4(rng).to_ipv6_compatible(),
        _ => rng.pick(&[Ipv6Addr::UNSPECIFIED, Ipv6Addr::LOCALHOST]),
    }
}

fn ip(rng: &mut Rng) -> IpAddr {
    if rng.chance(50) {
        IpAddr::V4(v4(rng))
    } else {
        IpAddr::V6(v6(rng))
    }
}

/// `ip` masked to `bits`.
fn masked(ip: IpAddr, bits: u32) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn max_bits(ip: IpAddr) -> u32 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// The first `bits` bits of `a` and `b` are equal: one bit at a time.
fn prefix_equal(a: &[u8], b: &[u8], bits: u32) -> bool {
    (0..bits as usize).all(|i| {
        let bit = |o: &[u8]| o[i / 8] >> (7 - i % 8) & 1;
        bit(a) == bit(b)
    })
}

/// The model of `contains`: same family after unmapping IPv4-mapped IPv6, first bits equal.
fn model_contains(net: IpAddr, bits: u32, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
        v4 => v4,
    };
    net.is_ipv4() == ip.is_ipv4() && prefix_equal(&octets(net), &octets(ip), bits)
}

/// The model of `parse`: the address, the prefix length (None: invalid), the host-bits rule.
fn model_parse(s: &str) -> Option<(IpAddr, u32)> {
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let bits = match bits {
        None => max_bits(ip),
        Some(b) => {
            if b.is_empty() || !b.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let n: u32 = b.parse().ok()?;
            if n > max_bits(ip) {
                return None;
            }
            n
        }
    };
    (masked(ip, bits) == ip).then_some((ip, bits))
}

fn text(rng: &mut Rng) -> String {
    let a = ip(rng);
    let max = max_bits(a);
    let bits = match rng.below(5) {
        0 => max,
        1 => 0,
        _ => rng.range(0, max as usize) as u32,
    };
    let net = if rng.chance(80) { masked(a, bits) } else { a };
    let mut s = net.to_string();
    match rng.below(12) {
        0 => {}
        1 => s.push_str(&format!("/{}", rng.range(0, 200))),
        2 => s.push_str(rng.pick(&["/", "/+8", "/-0", "/08", "/ 8", "/8 ", "/8/8", "/0x8", "/٨"])),
        3 => s = format!(" {s}/{bits}"),
        4 => s = gen::string(rng, 4),
        5 => {
            let mut b = format!("{s}/{bits}").into_bytes();
            gen::mutate(
                rng,
                &mut b,
                &[".", ":", "::", "/", "0", "ff", "%eth0", "[", "]"],
            );
            s = gen::text(b);
        }
        6 => s = format!("::ffff:{}/{}", v4(rng), rng.range(0, 128)),
        _ => s.push_str(&format!("/{bits}")),
    }
    s
}

pub fn run(c: &mut Case) -> Check {
    let s = text(&mut c.rng);
    c.show("cidr", &s);
    let parsed = Cidr::parse(&s);
    let model = model_parse(&s);
    let (net, bits) = match (&parsed, model) {
        (Ok(cidr), Some((net, bits))) => {
            let want = match net {
                IpAddr::V4(a) => Cidr::V4 {
                    net: u32::from(a),
                    bits: bits as u8,
                },
                IpAddr::V6(a) => Cidr::V6 {
                    net: u128::from(a),
                    bits: bits as u8,
                },
            };
            ensure!(*cidr == want, "parse({s:?}) = {cidr:?}, expected {want:?}");
            c.count("parsed");
            (net, bits)
        }
        (Err(e), None) => {
            c.count("refused");
            ensure!(
                e.contains(&s),
                "the refusal of {s:?} does not quote it: {e}"
            );
            return Ok(());
        }
        (got, want) => return Err(format!("parse({s:?}) = {got:?}, the model says {want:?}")),
    };
    let cidr = parsed.map_err(|e| e.to_string())?;
    // The canonical form reads back as the same network.
    let canonical = format!("{net}/{bits}");
    ensure!(
        Cidr::parse(&canonical) == Ok(cidr),
        "{canonical:?} does not read back as {cidr:?}"
    );
    // contains, at the edges of the network and elsewhere.
    let mut probes = vec![net, ip(&mut c.rng), ip(&mut c.rng)];
    let o = octets(net);
    let mut last = o.clone();
    for i in bits as usize..o.len() * 8 {
        last[i / 8] |= 1 << (7 - i % 8);
    }
    let mut outside = o.clone();
    if bits > 0 {
        let i = bits as usize - 1;
        outside[i / 8] ^= 1 << (7 - i % 8);
    }
    let random_inside = {
        let mut r = o.clone();
        for i in bits as usize..r.len() * 8 {
            if c.rng.chance(50) {
                r[i / 8] |= 1 << (7 - i % 8);
            }
        }
        r
    };
    for b in [&last, &outside, &random_inside] {
        probes.push(ip_from_octets(b).ok_or("octets")?);
    }
    if let IpAddr::V4(a) = net {
        probes.push(IpAddr::V6(a.to_ipv6_mapped()));
        probes.push(IpAddr::V6(a.to_ipv6_compatible()));
    }
    for p in probes {
        let got = cidr.contains(p);
        let want = model_contains(net, bits, p);
        ensure!(
            got == want,
            "{s:?} contains {p}: {got}, the model says {want}"
        );
        ensure!(
            ip_from_octets(&octets(p)) == Some(p),
            "ip_from_octets does not give back {p}"
        );
        // An allow list: all, or any network containing the address.
        let mut list = AllowList::default();
        list.add(&canonical).map_err(|e| e.to_string())?;
        list.add("none").map_err(|e| e.to_string())?;
        ensure!(list.allows(Some(p)) == got, "allow list {list:?} on {p}");
        ensure!(!list.allows(None), "a list without all allows no address");
        list.add("all").map_err(|e| e.to_string())?;
        ensure!(
            list.allows(Some(p)) && list.allows(None),
            "all allows everything"
        );
    }
    Ok(())
}
