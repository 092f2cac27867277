//! One control-socket line: decoded as a `Request` the way the appliance decodes it, and a
//! `backend` request applied to a registry (`control::apply_backend_command`, what the
//! appliance does before it republishes) with the tables rebuilt after. The same line is
//! decoded as a `Response`, as `fastpath lb` reads the appliance's answer. Checked: a
//! decoded request encodes and decodes to itself; a refused command changes nothing.

#![no_main]

use fastpath_fuzz::registry;
use libfuzzer_sys::fuzz_target;
use nfv_apps::lb::{
    control::{Request, Response, apply_backend_command},
    registry::Registry,
};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(response) = serde_json::from_str::<Response>(line) {
        let _ = serde_json::to_string(&response).unwrap();
    }
    let Ok(request) = serde_json::from_str::<Request>(line) else {
        return;
    };
    let encoded = serde_json::to_string(&request).unwrap();
    let again: Request = serde_json::from_str(&encoded).expect("an encoded request decodes");
    assert_eq!(format!("{request:?}"), format!("{again:?}"));
    let Request::Backend {
        action,
        vip,
        backend,
        weight,
    } = request
    else {
        return;
    };
    let mut registry = registry();
    let before = snapshot(&registry);
    match apply_backend_command(&mut registry, action, &vip, backend, weight) {
        Ok(()) => {
            let own = ["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()];
            let _ = registry.tables([2, 0, 0, 0, 0, 1], 1500, &own, Default::default());
        }
        Err(error) => {
            assert!(!error.to_string().is_empty());
            assert_eq!(
                before,
                snapshot(&registry),
                "a refused command changed the registry"
            );
        }
    }
});

/// Every backend of every VIP with its weight and operator state.
fn snapshot(registry: &Registry) -> Vec<String> {
    registry
        .vips
        .iter()
        .flat_map(|vip| {
            vip.backends.iter().map(move |b| {
                format!(
                    "{} {} {}:{} {:?}",
                    vip.config.key(),
                    b.id,
                    b.ip,
                    b.weight,
                    b.operator
                )
            })
        })
        .collect()
}
