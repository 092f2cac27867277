use super::*;

fn frames() -> Vec<Vec<u8>> {
    vec![vec![0xaa; 60], (0..=255).collect(), vec![1, 2, 3]]
}

/// A classic file of `frames` in the given byte order and timestamp magic.
fn classic(frames: &[Vec<u8>], little: bool, magic: u32, link_type: u32) -> Vec<u8> {
    let u32_bytes = |value: u32| {
        if little {
            value.to_le_bytes()
        } else {
            value.to_be_bytes()
        }
    };
    let u16_bytes = |value: u16| {
        if little {
            value.to_le_bytes()
        } else {
            value.to_be_bytes()
        }
    };
    let mut file = Vec::new();
    file.extend_from_slice(&u32_bytes(magic));
    file.extend_from_slice(&u16_bytes(2));
    file.extend_from_slice(&u16_bytes(4));
    file.extend_from_slice(&[0; 8]);
    file.extend_from_slice(&u32_bytes(65535));
    file.extend_from_slice(&u32_bytes(link_type));
    for frame in frames {
        file.extend_from_slice(&u32_bytes(1));
        file.extend_from_slice(&u32_bytes(2));
        file.extend_from_slice(&u32_bytes(frame.len() as u32));
        file.extend_from_slice(&u32_bytes(frame.len() as u32 + 4));
        file.extend_from_slice(frame);
    }
    file
}

fn datas(packets: &[CapturedPacket]) -> Vec<Vec<u8>> {
    packets.iter().map(|packet| packet.data.clone()).collect()
}

#[test]
fn what_write_writes_read_gives_back() {
    let packets = read(&write(&frames())).unwrap();
    assert_eq!(datas(&packets), frames());
    assert_eq!(
        packets.iter().map(|p| p.number).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(packets[0].offset, 24);
    assert_eq!(packets[1].offset, 24 + 16 + 60);
    assert_eq!(packets[2].original_len, 3);
}

#[test]
fn both_byte_orders_and_both_timestamp_units_are_read() {
    for little in [true, false] {
        for magic in [MAGIC_MICROS, MAGIC_NANOS] {
            let packets = read(&classic(&frames(), little, magic, 1)).unwrap();
            assert_eq!(datas(&packets), frames(), "little {little} magic {magic:x}");
            assert_eq!(packets[1].original_len, 260);
        }
    }
}

#[test]
fn an_empty_capture_has_no_packets() {
    assert_eq!(read(&write(&[])).unwrap(), vec![]);
}

#[test]
fn a_file_that_is_no_capture_is_named_by_its_first_bytes() {
    let error = read(b"\x7fELF\x02\x01").unwrap_err();
    assert_eq!(
        error,
        PcapError::NotPcap {
            magic: b"\x7fELF".to_vec()
        }
    );
    assert!(error.to_string().contains("7f454c46"), "{error}");
    assert!(read(b"").unwrap_err().to_string().contains("empty"));
}

#[test]
fn a_file_cut_in_its_header_says_so() {
    let file = write(&frames());
    assert_eq!(
        read(&file[..10]).unwrap_err(),
        PcapError::TruncatedHeader { len: 10 }
    );
}

#[test]
fn a_record_cut_short_names_its_number_and_offset() {
    let file = write(&frames());
    // Inside the second record's data.
    let cut = 24 + 16 + 60 + 16 + 100;
    let error = read(&file[..cut]).unwrap_err();
    let PcapError::BadRecord { record, offset, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!((*record, *offset), (2, 100));
    assert_eq!(
        error.to_string(),
        "record 2 at byte offset 100: truncated: the record says 256 captured bytes, the file holds 100"
    );
    // Inside the third record's header.
    let cut = 24 + 16 + 60 + 16 + 256 + 5;
    let error = read(&file[..cut]).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("record 3 at byte offset 372: truncated: the file ends 5 bytes into"),
        "{error}"
    );
}

#[test]
fn an_impossible_captured_length_is_a_damaged_file() {
    let mut file = write(&frames());
    file[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    let error = read(&file).unwrap_err().to_string();
    assert!(
        error.starts_with("record 1 at byte offset 24: captured length 4294967295"),
        "{error}"
    );
}

#[test]
fn only_ethernet_captures_are_read() {
    let error = read(&classic(&frames(), true, MAGIC_MICROS, 113)).unwrap_err();
    assert_eq!(
        error,
        PcapError::LinkType {
            link_type: 113,
            packet: 0
        }
    );
    assert!(
        error.to_string().contains("Linux cooked capture"),
        "{error}"
    );
    // The FCS bits above the link type are not part of it.
    let with_fcs = classic(&frames(), true, MAGIC_MICROS, 0x1000_0001);
    assert_eq!(read(&with_fcs).unwrap().len(), 3);
}

/// A pcapng block: type, total length, body padded to 4, total length.
fn block(little: bool, kind: u32, body: &[u8]) -> Vec<u8> {
    let bytes = |value: u32| {
        if little {
            value.to_le_bytes()
        } else {
            value.to_be_bytes()
        }
    };
    let mut padded = body.to_vec();
    padded.resize(body.len().div_ceil(4) * 4, 0);
    let len = 12 + padded.len() as u32;
    [bytes(kind).as_slice(), &bytes(len), &padded, &bytes(len)].concat()
}

fn section(little: bool) -> Vec<u8> {
    let order = if little {
        BYTE_ORDER_MAGIC.to_le_bytes()
    } else {
        BYTE_ORDER_MAGIC.to_be_bytes()
    };
    let version = if little { [1, 0, 0, 0] } else { [0, 1, 0, 0] };
    let body = [order.as_slice(), &version, &[0xff; 8]].concat();
    block(little, BLOCK_SECTION, &body)
}

fn interface(little: bool, link_type: u16, snap: u32) -> Vec<u8> {
    let body = if little {
        [
            link_type.to_le_bytes().as_slice(),
            &[0, 0],
            &snap.to_le_bytes(),
        ]
        .concat()
    } else {
        [
            link_type.to_be_bytes().as_slice(),
            &[0, 0],
            &snap.to_be_bytes(),
        ]
        .concat()
    };
    block(little, BLOCK_INTERFACE, &body)
}

fn enhanced(little: bool, interface: u32, frame: &[u8]) -> Vec<u8> {
    let bytes = |value: u32| {
        if little {
            value.to_le_bytes()
        } else {
            value.to_be_bytes()
        }
    };
    let len = frame.len() as u32;
    let body = [
        bytes(interface).as_slice(),
        &bytes(0),
        &bytes(0),
        &bytes(len),
        &bytes(len),
        frame,
    ]
    .concat();
    block(little, BLOCK_ENHANCED_PACKET, &body)
}

#[test]
fn pcapng_packets_are_read_in_both_byte_orders() {
    for little in [true, false] {
        let frames = frames();
        let mut simple_body = if little {
            3u32.to_le_bytes().to_vec()
        } else {
            3u32.to_be_bytes().to_vec()
        };
        simple_body.extend_from_slice(&frames[2]);
        let file = [
            section(little),
            interface(little, 1, 0),
            enhanced(little, 0, &frames[0]),
            // A name resolution block: skipped.
            block(little, 4, &[0; 8]),
            enhanced(little, 0, &frames[1]),
            block(little, BLOCK_SIMPLE_PACKET, &simple_body),
        ]
        .concat();
        let packets = read(&file).unwrap();
        assert_eq!(datas(&packets), frames, "little {little}");
        assert_eq!(packets[2].number, 3);
    }
}

#[test]
fn pcapng_errors_name_the_block_and_its_offset() {
    let frame = vec![0x55; 60];
    let good = [
        section(true),
        interface(true, 1, 0),
        enhanced(true, 0, &frame),
    ]
    .concat();
    let enhanced_at = section(true).len() + interface(true, 1, 0).len();

    let error = read(&good[..good.len() - 10]).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "block 3 at byte offset {enhanced_at}: truncated: the block says 92 bytes, the file holds 82"
        )
    );

    let unknown_interface = [
        section(true),
        interface(true, 1, 0),
        enhanced(true, 1, &frame),
    ]
    .concat();
    let error = read(&unknown_interface).unwrap_err().to_string();
    assert!(
        error.contains("packet 1 names interface 1; the section describes 1"),
        "{error}"
    );

    let raw_ip = [
        section(true),
        interface(true, 101, 0),
        enhanced(true, 0, &frame),
    ]
    .concat();
    assert_eq!(
        read(&raw_ip).unwrap_err(),
        PcapError::LinkType {
            link_type: 101,
            packet: 1
        }
    );

    let mut mismatched = good.clone();
    let last = mismatched.len() - 4;
    mismatched[last] ^= 4;
    let error = read(&mismatched).unwrap_err().to_string();
    assert!(error.contains("trailing length"), "{error}");

    // Cut inside the trailing length: the body is there, the block is not whole.
    let error = read(&good[..good.len() - 2]).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("block 3 at byte offset {enhanced_at}: truncated")),
        "{error}"
    );

    assert_eq!(
        read(&good[..8]).unwrap_err(),
        PcapError::TruncatedHeader { len: 8 }
    );
}
