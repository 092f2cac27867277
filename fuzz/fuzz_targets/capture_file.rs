//! Capture files as `fastpath module test --pcap` reads them (`wire::pcap::read`: classic
//! pcap in both byte orders and timestamp units, pcapng). Malformed input is an error,
//! never a panic. Checked: packets are numbered from 1 in file order, each lies inside the
//! file after its record's offset, and what `wire::pcap::write` writes of them reads back.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packets) = wire::pcap::read(data) else {
        return;
    };
    let mut last_offset = None;
    for (index, packet) in packets.iter().enumerate() {
        assert_eq!(packet.number, index + 1);
        assert!(packet.offset < data.len());
        assert!(packet.offset + packet.data.len() <= data.len());
        assert!(last_offset < Some(packet.offset));
        last_offset = Some(packet.offset);
    }
    let frames: Vec<Vec<u8>> = packets.into_iter().map(|packet| packet.data).collect();
    let again = wire::pcap::read(&wire::pcap::write(&frames)).expect("a written capture reads");
    let read_back: Vec<Vec<u8>> = again.into_iter().map(|packet| packet.data).collect();
    assert_eq!(read_back, frames);
});
