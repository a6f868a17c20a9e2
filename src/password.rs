//! What a password must be (one rule for the browser's form and the server): long enough to
//! resist guessing, not one of the passwords every attacker tries first, not the user's email.
//! Length is what matters most (NIST SP 800-63B); no rules about symbols.

/// The shortest password accepted.
pub const MIN_LENGTH: usize = 12;
/// The longest (argon2 hashes anything; this bounds the work a request can ask for).
pub const MAX_LENGTH: usize = 200;

/// The most common passwords of at least 12 characters (from public breach lists), lower-case.
const COMMON: &[&str] = &[
    "123456789012",
    "1234567890123",
    "qwertyuiopas",
    "qwerty123456",
    "password1234",
    "password12345",
    "passwordpassword",
    "iloveyou1234",
    "111111111111",
    "000000000000",
    "123123123123",
    "abcdefghijkl",
    "abc123abc123",
    "qwertyqwerty",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "zaq12wsxcde3",
    "letmein12345",
    "welcome12345",
    "welcome123456",
    "administrator",
    "changeme1234",
    "football1234",
    "baseball1234",
    "sunshine1234",
    "princess1234",
    "superman1234",
    "trustno1trustno1",
    "monkey123456",
    "dragon123456",
    "master123456",
    "starwars1234",
    "whatever1234",
    "michael12345",
    "jennifer1234",
    "computer1234",
    "internet1234",
    "password123!",
    "password2024",
    "password2025",
    "password2026",
    "summer2026!!",
    "winter2026!!",
    "turns-demo-password",
];

/// Why `password` is not accepted for the user with `email`, if it is not.
pub fn problem(password: &str, email: &str) -> Option<String> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Some(format!("Use at least {MIN_LENGTH} characters."));
    }
    if length > MAX_LENGTH {
        return Some(format!("Use at most {MAX_LENGTH} characters."));
    }
    let lower = password.to_lowercase();
    if COMMON.contains(&lower.as_str()) {
        return Some("This password is one of the most common: choose another.".into());
    }
    let first = lower.chars().next();
    if lower.chars().all(|c| Some(c) == first) {
        return Some("Do not repeat one character.".into());
    }
    let name = email.split('@').next().unwrap_or("").to_lowercase();
    if name.len() >= 3 && lower.contains(&name) {
        return Some("Do not use your email in your password.".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_uncommon_passwords_pass() {
        assert_eq!(problem("correct horse battery", "pm@turns.demo"), None);
        assert!(problem("short", "pm@turns.demo").is_some());
        assert!(
            problem("Password1234", "x@y.z").is_some(),
            "common, any case"
        );
        assert!(problem("aaaaaaaaaaaaaa", "x@y.z").is_some());
        assert!(problem("dana.foster-2026-tablet", "dana.foster@turns.demo").is_some());
        assert!(problem(&"x".repeat(201), "x@y.z").is_some());
    }
}
