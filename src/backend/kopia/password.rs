//! A kopia user's password hash, made here so that the password itself never
//! reaches a command line: `server user add --user-password-hash` takes the
//! hash. The format is kopia's `internal/user/hash_password.go`: base64 of
//! the JSON `{"passwordHashVersion":1,"passwordHash":base64(salt ‖ key)}`,
//! with a 32-byte salt and a 32-byte scrypt key (N = 65536, r = 8, p = 1:
//! `internal/crypto/pb_key_deriver_scrypt.go`, version 1 =
//! `ScryptHashVersion` in `internal/user/user_profile.go`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// `ScryptHashVersion`.
const SCRYPT_HASH_VERSION: u32 = 1;
/// `passwordHashSaltLength` and `passwordHashLength`.
const SALT_LEN: usize = 32;
const KEY_LEN: usize = 32;
/// scrypt-65536-8-1.
const LOG_N: u8 = 16;

/// The encoded hash of `password` with `salt`, as `--user-password-hash`
/// takes it.
pub fn user_password_hash(password: &str, salt: &[u8; SALT_LEN]) -> String {
    let params = scrypt::Params::new(LOG_N, 8, 1).expect("kopia's scrypt parameters are valid");
    let mut hash = salt.to_vec();
    let mut key = [0u8; KEY_LEN];
    scrypt::scrypt(password.as_bytes(), salt, &params, &mut key)
        .expect("a 32-byte key is a valid scrypt output length");
    hash.extend_from_slice(&key);
    // Go's encoding/json writes a []byte as standard base64.
    let json = serde_json::json!({
        "passwordHashVersion": SCRYPT_HASH_VERSION,
        "passwordHash": STANDARD.encode(&hash),
    });
    STANDARD.encode(json.to_string())
}

/// A fresh random salt.
pub fn random_salt() -> [u8; SALT_LEN] {
    use rand::RngExt;
    rand::rng().random()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_has_kopias_shape_and_its_scrypt_key() {
        let salt = [7u8; SALT_LEN];
        let encoded = user_password_hash("pass", &salt);
        let json: serde_json::Value =
            serde_json::from_slice(&STANDARD.decode(&encoded).unwrap()).unwrap();
        assert_eq!(json["passwordHashVersion"], 1);
        let hash = STANDARD
            .decode(json["passwordHash"].as_str().unwrap())
            .unwrap();
        // kopia's `validate`: salt and key, 64 bytes, the salt first.
        assert_eq!(hash.len(), SALT_LEN + KEY_LEN);
        assert_eq!(&hash[..SALT_LEN], &salt);
        // Python's hashlib.scrypt(b"pass", salt=bytes([7] * 32), n=65536,
        // r=8, p=1, dklen=32): another implementation of the same key.
        assert_eq!(
            hex::encode(&hash[SALT_LEN..]),
            "ccf632a2108a4644e868c870ece99202590c4e956fc432290c7aa3fbd0649b94"
        );
        assert_ne!(user_password_hash("other", &salt), encoded);
        assert_ne!(random_salt(), random_salt());
    }
}
