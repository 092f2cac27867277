//! The kernel's replies `fastpath probe` parses: a netdev generic-netlink DEV_GET reply
//! (variable length, attribute by attribute) and the ethtool ioctl replies, which fill
//! structs of fixed size, fed through `ethtool::read` by a fake that answers from the input.

#![no_main]

use std::io;

use libfuzzer_sys::fuzz_target;
use nic::{ethtool, xdp_features as netdev};

/// Answers each ethtool request with the next bytes of the input (fewer bytes leave the
/// rest of the struct as the request had it); a zero-length answer is an error, as from
/// a driver without that command.
struct Replies<'a>(&'a [u8]);

impl ethtool::Ethtool for Replies<'_> {
    fn request(&mut self, _iface: &str, buffer: &mut [u8]) -> io::Result<()> {
        let Some((&len, rest)) = self.0.split_first() else {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        };
        let len = usize::from(len).min(buffer.len()).min(rest.len());
        if len == 0 {
            self.0 = rest;
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        buffer[..len].copy_from_slice(&rest[..len]);
        self.0 = &rest[len..];
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let features = netdev::parse_dev(data);
    let _ = serde_json::to_string(&features).unwrap();
    for (_kind, payload) in netdev::attributes(data) {
        assert!(payload.len() + 4 <= data.len());
    }
    if let Ok(facts) = ethtool::read(&mut Replies(data), "fuzz0") {
        let _ = serde_json::to_string(&facts).unwrap();
    }
});
