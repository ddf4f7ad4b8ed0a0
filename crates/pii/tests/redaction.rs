//! Snapshot tests of redaction in every mode over text holding every kind.

use pii::{scrub, HashKey, Mode, Redactor};

const SAMPLE: &str = "Hi, I'm Jane (jane.doe@example.com, +44 20 7946 0958). Card 4111 1111 1111 1111, \
SSN 078-05-1123, IBAN DE89 3704 0044 0532 0130 00. Logged in from 203.0.113.7 and 2001:db8::1.\n\
export STRIPE_KEY=sk_live_4eC39HqLyjWDarjtT1zdp7dc\n\
Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U\n\
{\"user\":\"jane\",\"password\":\"c0rrect horse\"} — café ☕ 日本語";

#[test]
fn tag_mode_replaces_every_finding_by_its_kind() {
    insta::assert_snapshot!(scrub(SAMPLE));
}

#[test]
fn mask_mode_keeps_the_shape_and_hides_every_letter_and_digit() {
    insta::assert_snapshot!(Redactor::new(Mode::Mask).redact(SAMPLE).text);
}

#[test]
fn hash_mode_gives_equal_values_equal_tags_across_spellings() {
    let redactor = Redactor::new(Mode::Hash(HashKey::new(b"a test key of thirty-two bytes!!")));
    let text = "Card 4111 1111 1111 1111 then 4111-1111-1111-1111; mail JANE@example.com or jane@example.com; \
                ip 2001:db8:0:0:0:0:0:1 = 2001:db8::1; other card 4012888888881881";
    let out = redactor.redact(text).text;
    insta::assert_snapshot!(out);
    let tags: Vec<&str> = out.split([' ', ';']).filter(|w| w.starts_with('[')).collect();
    assert_eq!(tags[0], tags[1], "one card, two spellings");
    assert_eq!(tags[2], tags[3], "one address, two cases");
    assert_eq!(tags[4], tags[5], "one IPv6 address, two forms");
    assert_ne!(tags[0], tags[6], "two cards");
}

#[test]
fn hash_mode_depends_on_the_key() {
    let a = Redactor::new(Mode::Hash(HashKey::new(b"key a"))).redact("jane@example.com").text.into_owned();
    let b = Redactor::new(Mode::Hash(HashKey::new(b"key b"))).redact("jane@example.com").text.into_owned();
    assert_ne!(a, b);
    assert!(!format!("{:?}", HashKey::new(b"key a")).contains("key a"));
}

#[test]
fn clean_text_is_borrowed_not_copied() {
    assert!(matches!(scrub("GET /api/v1/items 200 in 12 ms"), std::borrow::Cow::Borrowed(_)));
}
