//! What a `backend` request does to the registry; the appliance republishes the tables
//! after. Kept apart from the appliance so the whole decision can be tested (and fuzzed)
//! without sockets or workers.

use std::net::IpAddr;

use crate::lb::{
    config::{InvalidVipKey, VipKey},
    control::protocol::BackendAction,
    registry::{Registry, RegistryError},
    tables::BackendState,
};

/// Why a `backend` request was refused (the response says this).
#[derive(Debug, thiserror::Error)]
pub enum BackendCommandError {
    /// The VIP is not `ADDR:PORT/PROTO`.
    #[error(transparent)]
    Vip(#[from] InvalidVipKey),
    /// The registry refused the change.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Applies `action` to `backend` of `vip` (`ADDR:PORT/PROTO`); a refused command changes
/// nothing.
pub fn apply_backend_command(
    registry: &mut Registry,
    action: BackendAction,
    vip: &str,
    backend: IpAddr,
    weight: Option<u32>,
) -> Result<(), BackendCommandError> {
    let vip: VipKey = vip.parse()?;
    let done = match action {
        BackendAction::Add => registry.add_backend(&vip, backend, weight.unwrap_or(1)),
        BackendAction::Remove => registry.remove_backend(&vip, backend),
        BackendAction::Drain => {
            registry.set_operator_state(&vip, backend, BackendState::Draining, weight)
        }
        BackendAction::Disable => {
            registry.set_operator_state(&vip, backend, BackendState::Disabled, weight)
        }
        BackendAction::Enable => {
            registry.set_operator_state(&vip, backend, BackendState::Active, weight)
        }
    };
    Ok(done?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::config::Config;

    fn registry() -> Registry {
        let text = "interface = \"eth0\"\n[[vip]]\naddress = \"10.0.0.100\"\nport = 80\n\
                    protocol = \"tcp\"\nforwarding = \"dsr-l2\"\n\
                    [[vip.backend]]\naddress = \"10.0.1.11\"\n";
        Registry::new(&Config::parse(text, "lb.toml").unwrap())
    }

    #[test]
    fn backend_commands_change_the_registry_or_say_why_not() {
        let mut registry = registry();
        let vip = "10.0.0.100:80/tcp";
        let new: IpAddr = "10.0.1.12".parse().unwrap();
        apply_backend_command(&mut registry, BackendAction::Add, vip, new, Some(3)).unwrap();
        assert_eq!(registry.vips[0].backends[1].weight, 3);
        apply_backend_command(&mut registry, BackendAction::Drain, vip, new, None).unwrap();
        assert_eq!(
            registry.vips[0].backends[1].operator,
            BackendState::Draining
        );
        let error = apply_backend_command(
            &mut registry,
            BackendAction::Add,
            "10.0.0.100:80",
            new,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("expected ADDR:PORT/PROTO"), "{error}");
        let v6 = "fd00::1".parse().unwrap();
        let error = apply_backend_command(&mut registry, BackendAction::Add, vip, v6, None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("is IPv6, VIP 10.0.0.100:80/tcp is not"),
            "{error}"
        );
        apply_backend_command(&mut registry, BackendAction::Remove, vip, new, None).unwrap();
        assert_eq!(registry.vips[0].backends.len(), 1);
    }
}
