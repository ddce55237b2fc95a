//! The one rule for recovery passphrases, for every front end.
//!
//! The hub keeps the subscriber's master key wrapped under a key derived from the recovery
//! passphrase (Argon2id, about a second per guess on a home PC). Whoever holds the hub's database
//! can try passphrases against that copy offline, as fast as they can pay for Argon2, so the
//! passphrase alone stands between them and every backup. It must be at least
//! [`MIN_CHARS`] characters and, by zxcvbn's estimate (which knows common passwords, names and
//! words, dates, keyboard walks, repeats and l33t), need at least 10^[`MIN_GUESSES_LOG10`]
//! guesses: zxcvbn's top score. Four or five uncommon words pass; so does
//! [`generate`]'s, which both shells offer.

use rand::Rng;

/// The fewest characters a recovery passphrase may have.
pub const MIN_CHARS: usize = 12;

/// The fewest guesses (as a power of ten) a recovery passphrase must take by zxcvbn's estimate.
pub const MIN_GUESSES_LOG10: f64 = 10.0;

/// What is wrong with `passphrase` as a recovery passphrase, in words that say what to do; `None`
/// when it is strong enough. `context` holds words an attacker would try first (the email
/// address, the device's name).
pub fn problem(passphrase: &str, context: &[&str]) -> Option<String> {
    let chars = passphrase.chars().count();
    if chars < MIN_CHARS {
        return Some(format!(
            "the recovery passphrase needs at least {MIN_CHARS} characters, not {chars}; \
             use four or more uncommon words, or let Surplus make one"
        ));
    }
    let mut words: Vec<&str> = context.to_vec();
    words.push("surplus");
    let estimate = zxcvbn::zxcvbn(passphrase, &words);
    if estimate.guesses_log10() >= MIN_GUESSES_LOG10 {
        return None;
    }
    let why = estimate
        .feedback()
        .and_then(|feedback| feedback.warning())
        .map(|warning| format!(" ({})", warning.to_string().trim_end_matches('.')))
        .unwrap_or_default();
    Some(format!(
        "the recovery passphrase is too easy to guess{why}; use four or more uncommon words, \
         or let Surplus make one"
    ))
}

/// A recovery passphrase made for the user: six groups of five letters and digits (about 150
/// bits), without the look-alikes 0/O and 1/I/L.
pub fn generate() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..6)
        .map(|_| {
            (0..5)
                .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Why a passphrase is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// The passphrase that opens the key kept at the hub (chosen on another device).
    Unlock,
    /// A new passphrase, for a key made now.
    Choose,
    /// A new passphrase to replace the one that just opened the key, which is too weak: the
    /// key is wrapped again under the new one.
    Replace { problem: &'a str },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passphrases_are_refused_with_what_to_do() {
        for weak in [
            "",
            "a",
            "password",
            "        ",
            "passwordpassword",
            "correcthorse",
            "qwertyuiopasdfgh",
            "aaaaaaaaaaaaaaaa",
            "123456789012345",
            "P@ssw0rd12345!",
            "ada@example.org",
            "ada@example.org!",
        ] {
            let problem = problem(weak, &["ada@example.org"]);
            assert!(problem.is_some(), "{weak:?} was accepted");
            assert!(
                problem.is_some_and(|p| p.contains("let Surplus make one")),
                "{weak:?}"
            );
        }
    }

    #[test]
    fn strong_passphrases_pass() {
        for strong in [
            "violet harbour tractor minnow quietly",
            "Ledger-Otter-Plum-Cascade-91",
            "my cat eats saffron on tuesdays",
            "a long recovery passphrase",
            "ada's recovery passphrase",
        ] {
            assert_eq!(problem(strong, &["ada@example.org"]), None, "{strong:?}");
        }
        for _ in 0..20 {
            let made = generate();
            assert_eq!(problem(&made, &[]), None, "{made}");
        }
    }

    #[test]
    fn generated_passphrases_are_long_unambiguous_and_differ() {
        let one = generate();
        assert_eq!(one.len(), 35);
        assert!(!one.contains(['0', 'O', '1', 'I', 'L']));
        assert_ne!(one, generate());
    }
}
