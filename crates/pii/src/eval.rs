//! Precision and recall of the scanner per kind against labelled text.
//!
//! A prediction matches a label of the same kind when it covers at least half of the labelled
//! characters; each label and each prediction is matched at most once. Labels of entities the
//! scanner does not look for (names, addresses…) are ignored; predictions over them count as false
//! positives of their kind.

use crate::{char_spans, scan, CharSpan, Kind};

/// One labelled text. Spans count characters (Unicode scalar values), end exclusive.
#[derive(Debug, Clone)]
pub struct Labelled<'a> {
    /// The text.
    pub text: &'a str,
    /// The labelled findings.
    pub spans: Vec<CharSpan>,
}

/// A record of a labelled corpus in Presidio-research's format (`full_text`, `spans` with
/// `entity_type`, `start_position`, `end_position` in code points), as read with any serde
/// deserializer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Record {
    /// The text.
    pub full_text: String,
    /// Its labels, of every entity type.
    pub spans: Vec<RecordSpan>,
}

/// One label of a [`Record`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct RecordSpan {
    /// Presidio's entity name (`EMAIL_ADDRESS`, …) or `SECRET`.
    pub entity_type: String,
    /// First character.
    pub start_position: usize,
    /// One past the last character.
    pub end_position: usize,
}

impl Record {
    /// The record with the labels of the kinds the scanner looks for.
    pub fn labelled(&self) -> Labelled<'_> {
        let spans = self
            .spans
            .iter()
            .filter_map(|s| {
                Some(CharSpan { kind: kind_for_label(&s.entity_type)?, start: s.start_position, end: s.end_position })
            })
            .collect();
        Labelled { text: &self.full_text, spans }
    }
}

/// Counts and rates for one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Score {
    /// The kind.
    pub kind: Kind,
    /// Labels found.
    pub true_positives: usize,
    /// Predictions matching no label.
    pub false_positives: usize,
    /// Labels not found.
    pub false_negatives: usize,
}

impl Score {
    /// Found labels over all predictions; 1.0 when nothing was predicted.
    pub fn precision(&self) -> f64 {
        ratio(self.true_positives, self.true_positives + self.false_positives)
    }

    /// Found labels over all labels; 1.0 when there were no labels.
    pub fn recall(&self) -> f64 {
        ratio(self.true_positives, self.true_positives + self.false_negatives)
    }

    /// Labels of this kind.
    pub fn support(&self) -> usize {
        self.true_positives + self.false_negatives
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// The kind for an entity label: Presidio's names (`EMAIL_ADDRESS`, `CREDIT_CARD`, `US_SSN`,
/// `IP_ADDRESS`, `PHONE_NUMBER`, `IBAN_CODE`), `SECRET`, or the stable kind names.
pub fn kind_for_label(label: &str) -> Option<Kind> {
    match label {
        "EMAIL_ADDRESS" => Some(Kind::Email),
        "CREDIT_CARD" => Some(Kind::CreditCard),
        "US_SSN" => Some(Kind::UsSsn),
        "IP_ADDRESS" => Some(Kind::IpAddress),
        "PHONE_NUMBER" => Some(Kind::PhoneNumber),
        "IBAN_CODE" => Some(Kind::Iban),
        "SECRET" => Some(Kind::Secret),
        other => Kind::from_name(other),
    }
}

/// One miss or false alarm, for tuning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistake {
    /// Index of the record.
    pub record: usize,
    /// The kind.
    pub kind: Kind,
    /// The characters concerned.
    pub value: String,
    /// `true` for a false positive, `false` for a missed label.
    pub false_positive: bool,
}

/// Scores every kind over `records`, with the mistakes behind them.
pub fn evaluate(records: &[Labelled<'_>]) -> (Vec<Score>, Vec<Mistake>) {
    let mut scores: Vec<Score> = Kind::ALL
        .iter()
        .map(|&kind| Score { kind, true_positives: 0, false_positives: 0, false_negatives: 0 })
        .collect();
    let mut mistakes = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let predicted = char_spans(record.text, &scan(record.text));
        let chars: Vec<char> = record.text.chars().collect();
        let value = |s: &CharSpan| chars.get(s.start..s.end).map(|c| c.iter().collect()).unwrap_or_default();
        let mut used = vec![false; predicted.len()];
        for gold in &record.spans {
            let hit = predicted.iter().enumerate().position(|(i, p)| {
                let overlap = p.end.min(gold.end).saturating_sub(p.start.max(gold.start));
                !used[i] && p.kind == gold.kind && overlap * 2 >= gold.end - gold.start
            });
            let score = &mut scores[Kind::ALL.iter().position(|k| *k == gold.kind).unwrap_or(0)];
            match hit {
                Some(i) => {
                    used[i] = true;
                    score.true_positives += 1;
                }
                None => {
                    score.false_negatives += 1;
                    mistakes.push(Mistake {
                        record: index,
                        kind: gold.kind,
                        value: value(gold),
                        false_positive: false,
                    });
                }
            }
        }
        for (p, _) in predicted.iter().zip(&used).filter(|(_, used)| !**used) {
            scores[Kind::ALL.iter().position(|k| *k == p.kind).unwrap_or(0)].false_positives += 1;
            mistakes.push(Mistake { record: index, kind: p.kind, value: value(p), false_positive: true });
        }
    }
    (scores, mistakes)
}
