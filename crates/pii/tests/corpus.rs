//! Precision and recall per kind on the labelled corpora: Presidio's generated sentences and the
//! project's own generated cases. Floors are asserted; the numbers are printed for tuning.

use pii::eval::{evaluate, Labelled, Record, Score};
use pii::Kind;

fn score(json: &str) -> Vec<Score> {
    let records: Vec<Record> = serde_json::from_str(json).unwrap();
    let labelled: Vec<Labelled<'_>> = records.iter().map(Record::labelled).collect();
    let (scores, mistakes) = evaluate(&labelled);
    for m in &mistakes {
        let what = if m.false_positive { "false positive" } else { "missed" };
        eprintln!("{what} {}: {:?} (record {})", m.kind, m.value, m.record);
    }
    for s in &scores {
        eprintln!(
            "{:<13} precision {:.3} recall {:.3} (tp {} fp {} fn {})",
            s.kind.as_str(),
            s.precision(),
            s.recall(),
            s.true_positives,
            s.false_positives,
            s.false_negatives
        );
    }
    scores
}

fn get(scores: &[Score], kind: Kind) -> Score {
    *scores.iter().find(|s| s.kind == kind).unwrap()
}

#[test]
fn presidios_generated_sentences_are_scanned_with_high_precision_and_recall() {
    let scores = score(include_str!("data/presidio_generated_small.json"));
    for kind in [Kind::Email, Kind::CreditCard, Kind::UsSsn, Kind::IpAddress] {
        let s = get(&scores, kind);
        assert!(s.recall() >= 1.0 && s.precision() >= 1.0, "{s:?}");
    }
    let phone = get(&scores, Kind::PhoneNumber);
    assert!(phone.recall() >= 0.9 && phone.precision() >= 0.9, "{phone:?}");
}

#[test]
fn the_generated_development_cases_are_scanned_with_high_precision_and_recall() {
    let scores = score(include_str!("data/generated_dev.json"));
    for s in &scores {
        assert!(s.precision() >= 0.9 && s.recall() >= 0.9, "{s:?}");
    }
}

#[test]
fn the_held_out_generated_cases_are_scanned_with_sensible_precision_and_recall() {
    let scores = score(include_str!("data/generated_holdout.json"));
    for s in &scores {
        assert!(s.precision() >= 0.8 && s.recall() >= 0.8, "{s:?}");
    }
}
