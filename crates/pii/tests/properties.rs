//! Property tests: the scanner never panics, its findings are ordered, disjoint and on character
//! boundaries, and redaction removes every value it found.

use pii::{char_spans, envelope, scan, scrub, Mode, Redactor};
use proptest::prelude::*;

/// Known-valid values of every kind.
const VALUES: &[&str] = &[
    "jane.doe@example.com",
    "o'neil+tag@mail.example.co.uk",
    "4111 1111 1111 1111",
    "4012-8888-8888-1881",
    "371449635398431",
    "078-05-1123",
    "531.21.7351",
    "58.74.121.78",
    "2001:db8::8a2e:370:7334",
    "+44 20 7946 0958",
    "(555) 123-4567",
    "001-420-335-7509x38548",
    "DE89 3704 0044 0532 0130 00",
    "GB29NWBK60161331926819",
    "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "AKIAIOSFODNN7EXAMPLE",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
    "password=Tr0ub4dor&3",
];

fn filler() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z]{1,12}",
        Just("é".to_owned()),
        Just("日本".to_owned()),
        Just("—".to_owned()),
        Just("ok,".to_owned())
    ]
}

fn mixed_text() -> impl Strategy<Value = (String, Vec<&'static str>)> {
    prop::collection::vec(
        prop_oneof![3 => filler().prop_map(Err), 1 => prop::sample::select(VALUES).prop_map(Ok)],
        0..24,
    )
    .prop_map(|parts| {
        let mut text = String::new();
        let mut values = Vec::new();
        for p in parts {
            if !text.is_empty() {
                text.push(' ');
            }
            match p {
                Ok(v) => {
                    values.push(v);
                    text.push_str(v);
                }
                Err(w) => text.push_str(&w),
            }
        }
        (text, values)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_text_scans_into_ordered_disjoint_findings_on_character_boundaries(text in any::<String>()) {
        let findings = scan(&text);
        let mut last = 0;
        for f in &findings {
            prop_assert!(f.start >= last && f.end > f.start && f.end <= text.len());
            prop_assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
            last = f.end;
        }
        for (f, c) in findings.iter().zip(char_spans(&text, &findings)) {
            prop_assert_eq!(c.start, text[..f.start].chars().count());
            prop_assert_eq!(c.end, text[..f.end].chars().count());
        }
        let _ = scrub(&text);
        let _ = Redactor::new(Mode::Mask).redact(&text);
    }

    #[test]
    fn digit_heavy_and_punctuation_heavy_text_never_panics(text in "[0-9 .:=@+()x_-]{0,200}") {
        let _ = scrub(&text);
    }

    #[test]
    fn every_inserted_value_is_found_and_gone_after_redaction((text, values) in mixed_text()) {
        let tagged = scrub(&text);
        let masked = Redactor::new(Mode::Mask).redact(&text).text.into_owned();
        for v in &values {
            // The password value, not its key, is the secret.
            let secret = v.strip_prefix("password=").unwrap_or(v);
            prop_assert!(!tagged.contains(secret), "{secret:?} survived in {tagged:?}");
            prop_assert!(!masked.contains(secret), "{secret:?} survived in {masked:?}");
        }
        let found: Vec<&str> = scan(&text).iter().map(|f| f.value(&text)).collect();
        for v in &found {
            prop_assert!(!tagged.contains(v), "{v:?} survived in {tagged:?}");
        }
        prop_assert_eq!(scrub(&tagged), tagged.clone(), "tagged output scans clean");
    }

    #[test]
    fn no_text_closes_the_envelope_early(text in any::<String>(), random in any::<[u8; 16]>()) {
        let e = envelope::wrap(&text, random);
        let closing = format!("</untrusted_content boundary=\"{}\">", e.boundary.as_str());
        prop_assert_eq!(e.wrapped.matches(&closing).count(), 1);
        prop_assert!(e.wrapped.ends_with(&closing));
        prop_assert_eq!(e.wrapped.matches(e.boundary.as_str()).count(), 2);
    }
}
