use super::*;
use crate::modules::trial::PacketOutcome;

fn parse(text: &str) -> Result<Expectations, ExpectError> {
    Expectations::parse(Path::new("expect.json"), text)
}

fn outcome(packet: usize, verdict: Verdict, module: Option<&str>, output: &[u8]) -> PacketOutcome {
    PacketOutcome {
        packet,
        name: format!("in.pcap#{packet}"),
        length: output.len(),
        action: "pass".into(),
        verdict,
        module: module.map(str::to_string),
        continued_by: vec![],
        changes: ByteChanges::between(output, output),
        output: None,
        output_bytes: output.to_vec(),
    }
}

fn trial() -> Trial {
    Trial {
        frags: true,
        modules: vec![],
        packets: vec![
            outcome(1, Verdict::ChainEnd, None, &[1, 2, 3]),
            outcome(2, Verdict::Drop, Some("dropper"), &[4, 5, 6]),
            outcome(3, Verdict::Tx, Some("ttl"), &[7, 8, 9]),
        ],
    }
}

#[test]
fn a_file_that_matches_has_no_mismatch() {
    let expectations = parse(
        r#"{"packets": [
            {"packet": 1, "verdict": "chain-end"},
            {"packet": 3, "verdict": "tx", "module": "ttl", "output": "07 08 09"},
            {"packet": 2, "verdict": "drop"}
        ]}"#,
    )
    .unwrap();
    assert_eq!(expectations.packets.len(), 3);
    assert_eq!(expectations.packets[1].output, Some(vec![7, 8, 9]));
    assert_eq!(expectations.check(&trial()), vec![]);
}

#[test]
fn each_differing_field_is_named_with_both_values() {
    let expectations = parse(
        r#"{"packets": [
            {"packet": 1, "verdict": "pass"},
            {"packet": 2, "verdict": "drop", "module": "counter"},
            {"packet": 3, "verdict": "tx", "output": "07 08 0a"},
            {"packet": 9, "verdict": "drop"}
        ]}"#,
    )
    .unwrap();
    let mismatches = expectations.check(&trial());
    let shown: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "packet 1 (in.pcap#1): verdict: expected pass, got chain-end",
            "packet 2 (in.pcap#2): module: expected counter, got dropper",
            "packet 3 (in.pcap#3): output: expected the file's 3 bytes, got 3 bytes, differing at 2: expected 0a, got 09",
            "packet 9: packet: expected packet 9, got only 3 packets ran",
        ]
    );
}

#[test]
fn an_expected_module_for_a_packet_the_chain_ended_says_none() {
    let expectations =
        parse(r#"{"packets": [{"packet": 1, "verdict": "chain-end", "module": "x"}]}"#).unwrap();
    let mismatches = expectations.check(&trial());
    assert_eq!(
        mismatches[0].differences[0].actual,
        "none (the chain ended it)"
    );
}

#[test]
fn port_is_forward() {
    let expectations = parse(r#"{"packets": [{"packet": 1, "verdict": "port"}]}"#).unwrap();
    assert_eq!(expectations.packets[0].verdict, Verdict::Forward);
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn bad_json_names_the_line_and_the_field() {
    assert_eq!(
        error("{\"packets\": [\n  {\"packet\": 1, \"verdict\": \"dorp\"}\n]}"),
        "expect.json: line 2 column 34: packets[0].verdict: unknown verdict \"dorp\"; expected one of drop, pass, tx, redirect, xsk, forward, aborted, chain-end, chain-empty, no-context, uncounted (or port)"
    );
    let misspelt =
        error("{\"packets\": [\n  {\"packet\": 1, \"verdict\": \"drop\", \"moduel\": \"x\"}\n]}");
    assert!(
        misspelt.starts_with(
            "expect.json: line 2 column 43: packets[0].moduel: unknown field `moduel`"
        ),
        "{misspelt}"
    );
    let not_hex = error(r#"{"packets": [{"packet": 1, "verdict": "drop", "output": "0g"}]}"#);
    assert!(
        not_hex.contains("packets[0].output:") && not_hex.contains("\"0g\" is not hex"),
        "{not_hex}"
    );
    let missing = error(r#"{"packets": [{"verdict": "drop"}]}"#);
    assert!(
        missing.contains("packets[0]: missing field `packet`"),
        "{missing}"
    );
    let truncated = error("{\"packets\": [");
    assert!(
        truncated.starts_with("expect.json: line 1 column 13:"),
        "{truncated}"
    );
    assert_eq!(
        error(r#""x""#),
        r#"expect.json: line 1 column 3: .: invalid type: string "x", expected an object {"packets": [...]}"#
    );
}

#[test]
fn a_packet_named_twice_or_numbered_zero_is_refused() {
    assert_eq!(
        error(
            r#"{"packets": [{"packet": 2, "verdict": "drop"}, {"packet": 2, "verdict": "pass"}]}"#
        ),
        "expect.json: packets[1]: packet 2 is named again (first in packets[0])"
    );
    assert_eq!(
        error(r#"{"packets": [{"packet": 0, "verdict": "drop"}]}"#),
        "expect.json: packets[0]: packets are numbered from 1"
    );
}
