use super::*;

#[test]
fn line_rates_follow_the_wire_overhead() {
    // The textbook figures: 14.88 Mpps at 10G/64 B, 812.74 kpps at 10G/1518 B.
    assert!((line_rate_mpps(10.0, 64) - 14.8809).abs() < 1e-3);
    assert!((line_rate_mpps(10.0, 1518) - 0.81274).abs() < 1e-4);
    assert!((line_rate_mpps(100.0, 64) - 148.809).abs() < 1e-2);
}

#[test]
fn every_builtin_profile_loads_and_matches_its_driver() {
    let profiles = Profiles::builtin();
    for driver in [
        "veth",
        "virtio_net",
        "i40e",
        "ice",
        "ixgbe",
        "mlx5_core",
        "nfp",
        "ena",
        "bnxt_en",
        "igc",
    ] {
        let profile = profiles.for_driver(driver).expect(driver);
        assert!(
            profile.supports("skb"),
            "{driver}: every driver runs generic XDP"
        );
        assert!(!profile.line_rates().is_empty(), "{driver}");
    }
    let nfp = profiles.by_name("nfp").unwrap();
    let limits = nfp.offload.as_ref().expect("nfp offloads");
    assert_eq!(limits.map_kinds, ["array", "hash"]);
    assert_eq!(limits.max_key_value_bytes, 64);
    assert!(!limits.redirect && !limits.af_xdp && !limits.btf);
    assert!(profiles.by_name("veth").unwrap().offload.is_none());
    assert!(!profiles.by_name("veth").unwrap().xdp.zero_copy);
}

fn veth_text() -> String {
    include_str!("../profiles/veth.toml").to_string()
}

#[test]
fn an_incomplete_profile_names_the_missing_key() {
    let text = veth_text().replace("zero_copy = false\n", "");
    let error = Profile::parse(&text, "mine.toml").unwrap_err().to_string();
    assert!(error.starts_with("profile mine.toml:"), "{error}");
    assert!(error.contains("zero_copy"), "{error}");
}

#[test]
fn a_bad_profile_names_the_key_and_line() {
    let text = veth_text().replace("batch = 64", "batch = \"many\"");
    let error = Profile::parse(&text, "mine.toml").unwrap_err().to_string();
    let line = veth_text()
        .lines()
        .position(|l| l.starts_with("batch"))
        .unwrap()
        + 1;
    assert!(
        error.contains(&format!("tuning.batch: line {line}")),
        "{error}"
    );
    let text = veth_text().replace("[tuning]\n", "[tuning]\ncolour = 1\n");
    let error = Profile::parse(&text, "mine.toml").unwrap_err().to_string();
    assert!(error.contains("colour"), "{error}");
    let text = veth_text().replace("frame_size = 4096", "frame_size = 3000");
    let error = Profile::parse(&text, "mine.toml").unwrap_err().to_string();
    assert!(error.contains("tuning.frame_size = 3000"), "{error}");
}

#[test]
fn a_user_directory_adds_and_overrides_profiles() {
    let dir = std::env::temp_dir().join(format!("fp-profiles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mine = veth_text().replace("name = \"veth\"", "name = \"lab-veth\"");
    std::fs::write(dir.join("lab-veth.toml"), mine).unwrap();
    let profiles = Profiles::with_dir(&dir).unwrap();
    assert_eq!(profiles.for_driver("veth").unwrap().name, "lab-veth");
    assert!(profiles.by_name("veth").is_some(), "the built-in one stays");
    std::fs::write(dir.join("broken.toml"), "name = 1\n").unwrap();
    let error = Profiles::with_dir(&dir).unwrap_err().to_string();
    assert!(
        error.contains("broken.toml") && error.contains("name"),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_config_value_overrides_the_profile_which_overrides_the_builtin_default() {
    let profiles = Profiles::builtin();
    let i40e = profiles.by_name("i40e");
    let batch = |config| crate::pick(config, i40e, |t| t.batch, 7);
    assert_eq!(batch(Some(32)).source, "config");
    assert_eq!(batch(Some(32)).value, 32);
    let from_profile = batch(None);
    assert_eq!(from_profile.value, i40e.unwrap().tuning.batch);
    assert_eq!(from_profile.source, "profile i40e");
    let builtin = crate::pick(None, None, |t| t.batch, 7);
    assert_eq!(
        builtin.to_string(),
        "7 (built-in default, no profile matched)"
    );
}
