//! How the service names a data subject without storing who it is: HMAC-SHA256 of the
//! lowercased email under a secret pepper (DESIGN §5). The register and restrictions hold
//! only this hash; a stolen register cannot be reversed without the pepper.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The register's key for `email`: 64 lowercase hex digits.
pub fn hash(pepper: &str, email: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(pepper.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(email.trim().to_lowercase().as_bytes());
    hex(&mac.finalize().into_bytes())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_is_keyed_and_case_blind() {
        let pepper = "0123456789abcdef0123456789abcdef";
        let a = super::hash(pepper, "Jan@Example.NL");
        assert_eq!(a, super::hash(pepper, " jan@example.nl"));
        assert_ne!(a, super::hash("another pepper of enough length!!", "jan@example.nl"));
        assert_eq!(a.len(), 64);
        // RFC 4231 test case 2 pins the construction.
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(b"Jefe").unwrap();
        hmac::Mac::update(&mut mac, b"what do ya want for nothing?");
        assert_eq!(
            super::hex(&hmac::Mac::finalize(mac).into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
