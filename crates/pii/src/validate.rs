//! Checksums and validity rules behind the scanner, usable on their own.
//!
//! Each rule names its source. Inputs are the bare characters (separators removed) unless a
//! function says otherwise.

/// Luhn (ISO/IEC 7812-1 Annex B) over ASCII digits: from the rightmost digit, every second digit is
/// doubled (minus 9 above 9); valid when the sum is a multiple of 10. As in Presidio's
/// `credit_card_recognizer.py`. Non-digits make it false.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &b) in digits.iter().rev().enumerate() {
        if !b.is_ascii_digit() {
            return false;
        }
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// Whether 13–19 ASCII digits are a plausible payment card number: an issuer prefix of the major
/// networks (Visa 4, Mastercard and Maestro 50–55 and 2221–2720, Amex 34/37, Diners 30/36/38, Discover and
/// UnionPay 6, JCB 35, UATP 1) and a valid Luhn checksum. Thirteen digits starting with 1 are refused,
/// as Presidio does (`(?!1\d{12}(?!\d))`): they are mostly other identifiers.
pub fn card_number(digits: &[u8]) -> bool {
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let prefix =
        |n: usize| -> u32 { digits.iter().take(n).fold(0u32, |acc, &b| acc * 10 + u32::from(b.wrapping_sub(b'0'))) };
    let issuer = match digits.first() {
        Some(b'4' | b'6' | b'3') => true,
        Some(b'5') => (50..=55).contains(&prefix(2)),
        Some(b'2') => (2221..=2720).contains(&prefix(4)),
        Some(b'1') => digits.len() != 13,
        _ => false,
    };
    issuer && luhn(digits)
}

/// US Social Security number rules for nine ASCII digits (SSA, "Social Security Number
/// Randomization", 2011, and Presidio's `us_ssn_recognizer.py`): the area (digits 1–3) is never
/// 000, 666 or 900–999; the group (4–5) is never 00; the serial (6–9) is never 0000; and the
/// numbers SSA or advertisers published (078-05-1120, 219-09-9999), runs of one digit and the
/// sequences 123456789 / 98765432x are refused.
pub fn us_ssn(digits: &[u8]) -> bool {
    if digits.len() != 9 || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let area = &digits[..3];
    let group = &digits[3..5];
    let serial = &digits[5..];
    if area == b"000" || area == b"666" || area[0] == b'9' || group == b"00" || serial == b"0000" {
        return false;
    }
    if digits.iter().all(|&d| d == digits[0]) {
        return false;
    }
    !(digits == b"123456789" || digits.starts_with(b"98765432") || digits == b"078051120" || digits == b"219099999")
}

/// IBAN check (ISO 13616-1:2020 and the SWIFT IBAN registry) for upper-case ASCII letters and
/// digits without separators: a registered country, its exact length and BBAN format, and the
/// ISO 7064 MOD 97-10 checksum (the rearranged number mod 97 is 1).
pub fn iban(chars: &[u8]) -> bool {
    let Some(cc) = chars.get(..2) else { return false };
    let Some(format) = iban_format(cc) else { return false };
    if chars.len() != 4 + format_len(format) {
        return false;
    }
    if !chars[2].is_ascii_digit() || !chars[3].is_ascii_digit() || !bban_matches(&chars[4..], format) {
        return false;
    }
    iban_mod97(chars) == 1
}

/// The rearranged IBAN (BBAN, then country and check digits; letters as 10–35) mod 97.
pub fn iban_mod97(chars: &[u8]) -> u32 {
    let (head, bban) = chars.split_at(chars.len().min(4));
    let mut rem = 0u32;
    for &c in bban.iter().chain(head) {
        rem = match c {
            b'0'..=b'9' => (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => (rem * 100 + u32::from(c - b'A') + 10) % 97,
            b'a'..=b'z' => (rem * 100 + u32::from(c - b'a') + 10) % 97,
            _ => return u32::MAX,
        };
    }
    rem
}

/// The expected length of an IBAN of country `cc`, when the country is registered.
pub fn iban_length(cc: &[u8]) -> Option<usize> {
    iban_format(cc).map(|f| 4 + format_len(f))
}

/// BBAN structures from the SWIFT IBAN registry (ISO 13616): `n` digits, `a` upper-case letters,
/// `c` letters or digits, each after its count.
const IBAN_FORMATS: &[(&[u8; 2], &str)] = &[
    (b"AD", "4n4n12c"),
    (b"AE", "3n16n"),
    (b"AL", "8n16c"),
    (b"AT", "5n11n"),
    (b"AZ", "4a20c"),
    (b"BA", "3n3n8n2n"),
    (b"BE", "3n7n2n"),
    (b"BG", "4a4n2n8c"),
    (b"BH", "4a14c"),
    (b"BR", "8n5n10n1a1c"),
    (b"BY", "4c4n16c"),
    (b"CH", "5n12c"),
    (b"CR", "4n14n"),
    (b"CY", "3n5n16c"),
    (b"CZ", "4n6n10n"),
    (b"DE", "8n10n"),
    (b"DK", "4n9n1n"),
    (b"DO", "4c20n"),
    (b"EE", "2n2n11n1n"),
    (b"EG", "4n4n17n"),
    (b"ES", "4n4n1n1n10n"),
    (b"FI", "3n11n"),
    (b"FO", "4n9n1n"),
    (b"FR", "5n5n11c2n"),
    (b"GB", "4a6n8n"),
    (b"GE", "2a16n"),
    (b"GI", "4a15c"),
    (b"GL", "4n9n1n"),
    (b"GR", "3n4n16c"),
    (b"GT", "4c20c"),
    (b"HR", "7n10n"),
    (b"HU", "3n4n1n15n1n"),
    (b"IE", "4a6n8n"),
    (b"IL", "3n3n13n"),
    (b"IQ", "4a3n12n"),
    (b"IS", "4n2n6n10n"),
    (b"IT", "1a5n5n12c"),
    (b"JO", "4a4n18c"),
    (b"KW", "4a22c"),
    (b"KZ", "3n13c"),
    (b"LB", "4n20c"),
    (b"LC", "4a24c"),
    (b"LI", "5n12c"),
    (b"LT", "5n11n"),
    (b"LU", "3n13c"),
    (b"LV", "4a13c"),
    (b"LY", "3n3n15n"),
    (b"MC", "5n5n11c2n"),
    (b"MD", "2c18c"),
    (b"ME", "3n13n2n"),
    (b"MK", "3n10c2n"),
    (b"MR", "5n5n11n2n"),
    (b"MT", "4a5n18c"),
    (b"MU", "4a2n2n12n3n3a"),
    (b"NL", "4a10n"),
    (b"NO", "4n6n1n"),
    (b"PK", "4a16c"),
    (b"PL", "8n16n"),
    (b"PS", "4a21c"),
    (b"PT", "4n4n11n2n"),
    (b"QA", "4a21c"),
    (b"RO", "4a16c"),
    (b"RS", "3n13n2n"),
    (b"SA", "2n18c"),
    (b"SC", "4a2n2n16n3a"),
    (b"SD", "2n12n"),
    (b"SE", "3n16n1n"),
    (b"SI", "5n8n2n"),
    (b"SK", "4n6n10n"),
    (b"SM", "1a5n5n12c"),
    (b"ST", "4n4n11n2n"),
    (b"SV", "4a20n"),
    (b"TL", "3n14n2n"),
    (b"TN", "2n3n13n2n"),
    (b"TR", "5n1n16c"),
    (b"UA", "6n19c"),
    (b"VA", "3n15n"),
    (b"VG", "4c16n"),
    (b"XK", "4n10n2n"),
];

fn iban_format(cc: &[u8]) -> Option<&'static str> {
    IBAN_FORMATS.iter().find(|(c, _)| c.as_slice() == cc).map(|(_, f)| *f)
}

/// Runs of a BBAN format: (count, class).
fn format_runs(format: &str) -> impl Iterator<Item = (usize, u8)> + '_ {
    let mut n = 0usize;
    format.bytes().filter_map(move |b| {
        if b.is_ascii_digit() {
            n = n * 10 + usize::from(b - b'0');
            None
        } else {
            let run = (n, b);
            n = 0;
            Some(run)
        }
    })
}

fn format_len(format: &str) -> usize {
    format_runs(format).map(|(n, _)| n).sum()
}

fn bban_matches(bban: &[u8], format: &str) -> bool {
    let mut i = 0;
    for (n, class) in format_runs(format) {
        let Some(run) = bban.get(i..i + n) else { return false };
        let ok = match class {
            b'n' => run.iter().all(u8::is_ascii_digit),
            b'a' => run.iter().all(u8::is_ascii_uppercase),
            _ => run.iter().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()),
        };
        if !ok {
            return false;
        }
        i += n;
    }
    i == bban.len()
}

/// Shannon entropy of `bytes` in bits per byte.
pub fn shannon_entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let len = bytes.len() as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| f64::from(c) / len).map(|p| -p * p.log2()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: fn(&[u8]) -> bool, cases: &[(&str, bool)]) {
        for (input, expected) in cases {
            let bare: Vec<u8> = input.bytes().filter(|b| !matches!(b, b' ' | b'-' | b'.')).collect();
            assert_eq!(f(&bare), *expected, "{input}");
        }
    }

    #[test]
    fn luhn_accepts_presidios_valid_cards_and_refuses_the_broken_ones() {
        // presidio-analyzer/tests/test_credit_card_recognizer.py (test-vectors.md §9.3).
        check(
            card_number,
            &[
                ("4012888888881881", true),
                ("4012-8888-8888-1881", true),
                ("4012 8888 8888 1881", true),
                ("122000000000003", true),
                ("371449635398431", true),
                ("5555555555554444", true),
                ("5019717010103742", true),
                ("30569309025904", true),
                ("6011000400000000", true),
                ("3528000700000000", true),
                ("6759649826438453", true),
                ("4111111111111111", true),
                ("4917300800000000", true),
                ("4484070000000000", true),
                ("2223003122003222", true),
                ("4012-8888-8888-1882", false),
                ("36168002586008", false),
                ("1748503543012", false),
                ("411111111111", false),
                ("41111111111111111111", false),
            ],
        );
        check(luhn, &[("5019717010103742", true), ("79927398713", true), ("79927398710", false), ("", false)]);
    }

    #[test]
    fn ssn_rules_follow_the_ssa_and_presidio() {
        check(
            us_ssn,
            &[
                ("078-05-1123", true),
                ("078.05.1123", true),
                ("531-21-7351", true),
                ("078051120", false),
                ("219-09-9999", false),
                ("000000000", false),
                ("666000000", false),
                ("666-12-3456", false),
                ("000-12-3456", false),
                ("900-12-3456", false),
                ("999-12-3456", false),
                ("078-05-0000", false),
                ("078 00 1123", false),
                ("111-11-1111", false),
                ("123-45-6789", false),
                ("987-65-4320", false),
                ("0780511201", false),
            ],
        );
    }

    #[test]
    fn ibans_need_a_registered_country_its_length_and_format_and_mod_97() {
        // presidio-analyzer/tests/test_iban_recognizer.py (test-vectors.md §9.3).
        check(
            iban,
            &[
                ("DE89370400440532013000", true),
                ("DE89 3704 0044 0532 0130 00", true),
                ("GB29NWBK60161331926819", true),
                ("FR1420041010050500013M02606", true),
                ("NL91ABNA0417164300", true),
                ("CH9300762011623852957", true),
                ("IE29AIBK93115212345678", true),
                ("AL47212110090000000235698741", true),
                ("DE89 3704 0044 0532 0130 01", false),
                ("GB29 NWBK 6016 1331 9268 10", false),
                ("GB29 1WBK 6016 1331 9268 19", false),
                ("FR14 2004 1010 0505 0001 3M02 607", false),
                ("XX89370400440532013000", false),
                ("DE8937040044053201300", false),
            ],
        );
        assert_eq!(iban_length(b"DE"), Some(22));
        assert_eq!(iban_length(b"NO"), Some(15));
        assert_eq!(iban_length(b"LC"), Some(32));
        assert_eq!(iban_length(b"ZZ"), None);
    }

    #[test]
    fn every_registered_iban_length_is_between_15_and_34() {
        for (cc, f) in IBAN_FORMATS {
            let len = 4 + format_len(f);
            assert!((15..=34).contains(&len), "{}", String::from_utf8_lossy(cc.as_slice()));
        }
    }

    #[test]
    fn entropy_is_zero_for_one_symbol_and_grows_with_variety() {
        assert_eq!(shannon_entropy(b"aaaa"), 0.0);
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
        assert!(shannon_entropy(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY") > 4.0);
    }
}
