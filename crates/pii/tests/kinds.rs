//! Table-driven checks per kind: each input with exactly the values the scanner must find in it.

use pii::{scan, Kind};

#[track_caller]
fn check(input: &str, expected: &[(Kind, &str)]) {
    let found: Vec<(Kind, &str)> = scan(input).iter().map(|f| (f.kind, f.value(input))).collect();
    assert_eq!(found, expected, "input: {input:?}");
}

use Kind::*;

#[test]
fn email_addresses_are_found_with_their_whole_domain_and_nothing_around_them() {
    check("write to john.doe@example.com today", &[(Email, "john.doe@example.com")]);
    check("<Jane_O+news@mail.example.co.uk>.", &[(Email, "Jane_O+news@mail.example.co.uk")]);
    check("user=a.b-c@sub-domain.example.org action=x", &[(Email, "a.b-c@sub-domain.example.org")]);
    check("mailto:x@xn--bcher-kva.example", &[(Email, "x@xn--bcher-kva.example")]);
    check("请发邮件到 wang@example.cn 谢谢", &[(Email, "wang@example.cn")]);
    check("end of sentence: a@b.io.", &[(Email, "a@b.io")]);
    check("@handle and @ alone and a@b and a@localhost", &[]);
    check("logo@2x.png and icon@3x.svg", &[]);
    check("double..dot@example.com", &[]);
    check("x@-bad.example.com x@bad-.com", &[]);
}

#[test]
fn payment_cards_are_luhn_checked_in_every_printed_layout() {
    check("card 4111111111111111 ok", &[(CreditCard, "4111111111111111")]);
    check("card 4012-8888-8888-1881.", &[(CreditCard, "4012-8888-8888-1881")]);
    check("card 4012 8888 8888 1881, exp 12/27", &[(CreditCard, "4012 8888 8888 1881")]);
    check("amex 3714 496353 98431", &[(CreditCard, "3714 496353 98431")]);
    check("mc 2223003122003222", &[(CreditCard, "2223003122003222")]);
    check("uatp 122000000000003", &[(CreditCard, "122000000000003")]);
    check("card 4012-8888-8888-1882", &[]);
    check("card 4012 8888-8888 1881", &[]);
    check("id 1748503543012", &[]);
    check("x4111111111111111 and 4111111111111111y", &[]);
    check("ids 12 4111 1111 1111 1111 99", &[(CreditCard, "4111 1111 1111 1111")]);
}

#[test]
fn ssns_follow_the_ssa_rules_and_bare_digits_need_context() {
    check("ssn 078-05-1123", &[(UsSsn, "078-05-1123")]);
    check("ssn 078.05.1123 and 078 05 1123", &[(UsSsn, "078.05.1123"), (UsSsn, "078 05 1123")]);
    check("My SSN is 078051123", &[(UsSsn, "078051123")]);
    check("SSN: 078-051123", &[(UsSsn, "078-051123")]);
    check("license 078051123", &[]);
    for invalid in
        ["000-12-3456", "666-12-3456", "900-12-3456", "078-00-1123", "078-05-0000", "078-05-1120", "123-45-6789"]
    {
        check(&format!("ssn {invalid}"), &[]);
    }
    check("ssn 693-09.4444", &[]);
}

#[test]
fn ip_addresses_of_both_versions_are_found_and_versions_are_not() {
    check("from 58.74.121.78 blocked", &[(IpAddress, "58.74.121.78")]);
    check("|98.85.59.159|", &[(IpAddress, "98.85.59.159")]);
    check("listen 10.0.0.1:8080", &[(IpAddress, "10.0.0.1")]);
    check("v6 2001:db8::8a2e:370:7334 up", &[(IpAddress, "2001:db8::8a2e:370:7334")]);
    check("full 2001:0db8:85a3:0000:0000:8a2e:0370:7334.", &[(IpAddress, "2001:0db8:85a3:0000:0000:8a2e:0370:7334")]);
    check("[::1]:443 and fe80::1ff:fe23:4567:890a", &[(IpAddress, "::1"), (IpAddress, "fe80::1ff:fe23:4567:890a")]);
    check("mapped ::ffff:192.0.2.1 ok", &[(IpAddress, "::ffff:192.0.2.1")]);
    check("256.1.1.1 and 1.2.3.4.5 and v1.2.3.4 and 1.2.3", &[]);
    check("std::vector at 12:30:45 and 00:1A:2B:3C:4D:5E", &[]);
}

#[test]
fn phone_numbers_are_found_in_international_and_national_formats() {
    check("call +1-944-435-4352x04732 now", &[(PhoneNumber, "+1-944-435-4352x04732")]);
    check("fax 001-825-741-0957x5184", &[(PhoneNumber, "001-825-741-0957x5184")]);
    check("(96) 627-277 or (07) 5331 0577", &[(PhoneNumber, "(96) 627-277"), (PhoneNumber, "(07) 5331 0577")]);
    check("Desk: 986.291.2294x751", &[(PhoneNumber, "986.291.2294x751")]);
    check(
        "+44 20 7946 0958 and +44(0)20 7946 0958",
        &[(PhoneNumber, "+44 20 7946 0958"), (PhoneNumber, "+44(0)20 7946 0958")],
    );
    check("+33 6 12 34 56 78; 06 12 34 56 78", &[(PhoneNumber, "+33 6 12 34 56 78"), (PhoneNumber, "06 12 34 56 78")]);
    check("+49 30 901820 and +14155552671", &[(PhoneNumber, "+49 30 901820"), (PhoneNumber, "+14155552671")]);
    check("(555) 123-4567 or 555-1234", &[(PhoneNumber, "(555) 123-4567"), (PhoneNumber, "555-1234")]);
    check("call me on 5551234567", &[(PhoneNumber, "5551234567")]);
    check("order 5551234567 shipped", &[]);
}

#[test]
fn numbers_that_are_not_phone_numbers_are_left_alone() {
    check("When: 1998-06-28 14:48:14", &[]);
    check("born 12/27/1986, on 2023.05.01 or 01.05.2023", &[]);
    check("from 1 200 000 to 3 400 000 users; 1.234.567 EUR", &[]);
    check("years 2019 2020 2021 and 1990-2000", &[]);
    check("27 2279 President St, 74 106 Kate Edger Place", &[]);
    check("metrics 30 42 42 42 12", &[]);
    check("version 1.22.3 build 4567", &[]);
    check("ZIP: 11164, $1,249.99, 20%", &[]);
}

#[test]
fn ibans_are_found_compact_or_in_groups_of_four_and_checksummed() {
    check("IBAN DE89370400440532013000.", &[(Iban, "DE89370400440532013000")]);
    check("to DE89 3704 0044 0532 0130 00 by Friday", &[(Iban, "DE89 3704 0044 0532 0130 00")]);
    check(
        "GB29NWBK60161331926819 and NL91ABNA0417164300",
        &[(Iban, "GB29NWBK60161331926819"), (Iban, "NL91ABNA0417164300")],
    );
    check("FR14 2004 1010 0505 0001 3M02 606", &[(Iban, "FR14 2004 1010 0505 0001 3M02 606")]);
    check("DE89 3704 0044 0532 0130 01", &[]);
    check("GB29 1WBK 6016 1331 9268 19", &[]);
    check("XDE89370400440532013000", &[]);
}

#[test]
fn provider_keys_tokens_and_private_keys_are_secrets() {
    let stripe = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";
    check(&format!("key {stripe} here"), &[(Secret, stripe)]);
    let github = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
    check(&format!("token:{github}"), &[(Secret, github)]);
    check("AKIAIOSFODNN7EXAMPLE in config", &[(Secret, "AKIAIOSFODNN7EXAMPLE")]);
    let slack = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx";
    check(slack, &[(Secret, slack)]);
    let google = "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI";
    check(&format!("maps {google}"), &[(Secret, google)]);
    let openai = "sk-proj-Abc123def456ghi789jkl012mno345";
    check(&format!("use {openai}."), &[(Secret, openai)]);
    check("a risk-free task-list and sk-short", &[]);
    let jwt =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    check(&format!("Authorization: Bearer {jwt}"), &[(Secret, jwt)]);
    check(&format!("id_token={jwt}&state=1"), &[(Secret, jwt)]);
    check("Bearer abcdefghijklmnopqrstuvwx1234", &[(Secret, "abcdefghijklmnopqrstuvwx1234")]);
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234\nabcd==\n-----END RSA PRIVATE KEY-----";
    check(&format!("key:\n{pem}\nend"), &[(Secret, pem)]);
    check(
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
        &[(Secret, "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC")],
    );
    check("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", &[]);
}

#[test]
fn values_under_secret_keys_are_secrets_and_ordinary_values_are_not() {
    check("password=hunter2 user=bob", &[(Secret, "hunter2")]);
    check(r#"{"user":"bob","password":"c0rrect horse"}"#, &[(Secret, "c0rrect horse")]);
    check(r#"{\"password\":\"S3cr3t!x\"}"#, &[(Secret, "S3cr3t!x")]);
    check("DB_PASS=A&Ex8wq@AukWS next", &[(Secret, "A&Ex8wq@AukWS")]);
    check("api_key=3f7a9c0e5b1d4f6a8c2e0b9d7f5a3c1e", &[(Secret, "3f7a9c0e5b1d4f6a8c2e0b9d7f5a3c1e")]);
    check(
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        &[(Secret, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")],
    );
    check("Authorization: Basic dXNlcjpwYXNzd29yZDEyMw==", &[(Secret, "dXNlcjpwYXNzd29yZDEyMw==")]);
    check("blob=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRkdI", &[(Secret, "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRkdI")]);
    check("password: incorrect, try again", &[]);
    check("password=${DB_PASSWORD} token=[SECRET] secret=****** pwd=<your password>", &[]);
    check("token_count: 1532, max_tokens=2048, author: Jane", &[]);
    check("request_id=550e8400-e29b-41d4-a716-446655440000 commit=9fceb02d0ae598e95dc970b74767f19372d61af8", &[]);
}

#[test]
fn text_in_any_language_and_odd_bytes_scan_without_trouble() {
    check("", &[]);
    check("Ünïcödé ✓ 日本語のテキスト 🙂 with +49 30 901820 inside", &[(PhoneNumber, "+49 30 901820")]);
    check("\u{0}\u{1}@@@:::===---___...", &[]);
    check("é@é.fr a@é.com", &[]);
}

#[test]
fn values_written_one_after_another_are_each_found() {
    check(
        "078-05-1123 2001:db8::8a2e:370:7334 (555) 123-4567",
        &[(UsSsn, "078-05-1123"), (IpAddress, "2001:db8::8a2e:370:7334"), (PhoneNumber, "(555) 123-4567")],
    );
    check(
        "+44 20 7946 0958 (555) 123-4567 371449635398431",
        &[(PhoneNumber, "+44 20 7946 0958"), (PhoneNumber, "(555) 123-4567"), (CreditCard, "371449635398431")],
    );
    check(
        "4111 1111 1111 1111 078-05-1123 4111 1111 1111 1111",
        &[(CreditCard, "4111 1111 1111 1111"), (UsSsn, "078-05-1123"), (CreditCard, "4111 1111 1111 1111")],
    );
    check(
        "+44 20 7946 0958 4111 1111 1111 1111",
        &[(PhoneNumber, "+44 20 7946 0958"), (CreditCard, "4111 1111 1111 1111")],
    );
}
