use std::io;

use super::*;
use crate::fake::{i40e, mlx5, nfp};

#[test]
fn ethtool_replies_parse_into_the_devices_facts() {
    let facts = read(&mut i40e(), "eth0").unwrap();
    assert_eq!(facts.info.driver, "i40e");
    assert_eq!(facts.info.firmware, "9.20 0x8000d8c5 1.3353.0");
    assert_eq!(facts.info.bus_info, "0000:3b:00.0");
    let channels = facts.channels.unwrap();
    assert_eq!((channels.combined, channels.max_combined), (16, 64));
    assert_eq!(facts.rss_indirection, Some(512));
    assert_eq!(facts.speed_mbps, Some(40_000));
    assert!(facts.ntuple.enabled);
    assert_eq!(
        (facts.ntuple.capacity, facts.ntuple.rules),
        (Some(8192), Some(2))
    );
    let nfp = read(&mut nfp(), "eth0").unwrap();
    assert_eq!(nfp.ntuple.capacity, None);
    assert!(nfp.ntuple.error.unwrap().starts_with("EOPNOTSUPP"));
}

#[test]
fn channels_give_the_queue_count_an_af_xdp_socket_can_bind_to() {
    let i40e = channels(&mut i40e(), "eth0").unwrap();
    assert_eq!(
        i40e.queue_count(),
        16,
        "16 combined; the \"other\" channel is no queue"
    );
    let mlx5 = channels(&mut mlx5(), "eth0").unwrap();
    assert_eq!(mlx5.queue_count(), 63);
}

/// A driver that refuses everything with one errno.
struct Refusing(i32);

impl Ethtool for Refusing {
    fn request(&mut self, _iface: &str, _buffer: &mut [u8]) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(self.0))
    }
}

#[test]
fn a_driver_that_answers_nothing_fails_naming_the_command_and_keeping_the_errno() {
    let error = read(&mut Refusing(libc::ENODEV), "gone0").unwrap_err();
    assert!(
        matches!(&error, NicError::Syscall { call: "SIOCETHTOOL ETHTOOL_GDRVINFO", source }
            if source.raw_os_error() == Some(libc::ENODEV)),
        "{error:?}"
    );
    let error = channels(&mut Refusing(libc::EOPNOTSUPP), "lo").unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::EOPNOTSUPP));
    assert!(
        error
            .to_string()
            .starts_with("SIOCETHTOOL ETHTOOL_GCHANNELS failed")
    );
    let error = statistics(&mut Refusing(libc::EPERM), "eth0").unwrap_err();
    assert!(matches!(
        error,
        NicError::Syscall {
            call: "SIOCETHTOOL ETHTOOL_GSSET_INFO",
            ..
        }
    ));
}

#[test]
fn the_nfp_has_no_ntuple_and_says_why() {
    let facts = read(&mut nfp(), "eth0").unwrap();
    assert!(!facts.ntuple.enabled);
    assert_eq!(facts.ntuple.rules, None);
}
