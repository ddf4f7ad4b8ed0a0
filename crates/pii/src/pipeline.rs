//! The activity ingestion pipeline: seven stages in order, each able to drop or alter an item and
//! each reported. Pure: the item's time is an input, the user's allowed windows and the hashes
//! already seen are supplied by the caller.
//!
//! 1. sensitive-application exclusion (a configurable list);
//! 2. private/incognito window exclusion;
//! 3. time-window check (allowed windows per user);
//! 4. PII stripping (tag mode);
//! 5. title cut to 200 characters;
//! 6. text cut to 5,000 characters (both cuts on character boundaries);
//! 7. de-duplication by a hash of the cleaned content.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Datelike as _, FixedOffset, NaiveTime, Offset as _, Utc, Weekday};
use sha2::{Digest as _, Sha256};

use crate::{Kind, Redactor};

/// Longest title kept, in characters.
pub const TITLE_MAX_CHARS: usize = 200;
/// Longest text kept, in characters.
pub const TEXT_MAX_CHARS: usize = 5_000;

/// One captured activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// The application (name or bundle identifier).
    pub app: String,
    /// The window title.
    pub title: String,
    /// The captured text.
    pub text: String,
    /// Whether the capturing client reported a private or incognito window.
    pub private_window: bool,
    /// When it was captured.
    pub at: DateTime<Utc>,
}

/// The pipeline's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Applications never ingested, matched case-insensitively as substrings of the app name.
    pub sensitive_apps: Vec<String>,
    /// Title fragments that mark a private window, matched case-insensitively.
    pub private_title_markers: Vec<String>,
}

impl Default for Config {
    /// Password managers, authenticators and keychains; the private-window titles of Chrome
    /// (Incognito), Edge (InPrivate), Firefox and Safari (Private Browsing).
    fn default() -> Config {
        let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        Config {
            sensitive_apps: list(&[
                "1password",
                "bitwarden",
                "keepass",
                "lastpass",
                "dashlane",
                "keeper",
                "enpass",
                "keychain",
                "authenticator",
                "authy",
            ]),
            private_title_markers: list(&["incognito", "inprivate", "private browsing", "private window"]),
        }
    }
}

/// Days of the week as a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days(u8);

impl Days {
    /// Monday to Friday.
    pub const WEEKDAYS: Days = Days(0b001_1111);
    /// Every day.
    pub const ALL: Days = Days(0b111_1111);

    /// The set of `days`.
    pub fn of(days: &[Weekday]) -> Days {
        Days(days.iter().fold(0, |acc, d| acc | 1 << d.num_days_from_monday()))
    }

    /// Whether `day` is in the set.
    pub fn contains(self, day: Weekday) -> bool {
        self.0 & (1 << day.num_days_from_monday()) != 0
    }
}

/// An allowed window: on `days`, from `start` (inclusive) to `end` (exclusive), local time. A
/// window whose end is not after its start runs past midnight into the next day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Days on which the window opens.
    pub days: Days,
    /// Opening time.
    pub start: NaiveTime,
    /// Closing time.
    pub end: NaiveTime,
}

/// A user's allowed windows in their time zone. No windows means always allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The user's offset from UTC.
    pub offset: FixedOffset,
    /// The windows.
    pub windows: Vec<Window>,
}

impl Schedule {
    /// Always allowed.
    pub fn always() -> Schedule {
        Schedule { offset: Utc.fix(), windows: Vec::new() }
    }

    /// Whether `at` falls in one of the windows.
    pub fn allows(&self, at: DateTime<Utc>) -> bool {
        if self.windows.is_empty() {
            return true;
        }
        let local = at.with_timezone(&self.offset);
        let (day, time) = (local.weekday(), local.time());
        self.windows.iter().any(|w| {
            if w.start < w.end {
                w.days.contains(day) && time >= w.start && time < w.end
            } else {
                (w.days.contains(day) && time >= w.start) || (w.days.contains(day.pred()) && time < w.end)
            }
        })
    }
}

/// The stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// 1. Sensitive-application exclusion.
    SensitiveApp,
    /// 2. Private/incognito window exclusion.
    PrivateWindow,
    /// 3. Time-window check.
    TimeWindow,
    /// 4. PII stripping.
    PiiStrip,
    /// 5. Title cut to 200 characters.
    TitleCut,
    /// 6. Text cut to 5,000 characters.
    TextCut,
    /// 7. De-duplication of identical content.
    Dedup,
}

/// What a stage did. Details never contain the item's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passed unchanged.
    Kept,
    /// Passed with a change.
    Altered(String),
    /// Dropped; later stages did not run.
    Dropped(String),
}

/// One stage's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageReport {
    /// The stage.
    pub stage: Stage,
    /// What it did.
    pub outcome: Outcome,
}

/// A SHA-256 over the cleaned application, title and text: equal content, equal hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl std::fmt::Display for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The hashes of content already stored, as the caller keeps them.
pub trait SeenHashes {
    /// Whether `hash` was seen.
    fn contains_hash(&self, hash: &ContentHash) -> bool;
}

impl SeenHashes for HashSet<ContentHash> {
    fn contains_hash(&self, hash: &ContentHash) -> bool {
        self.contains(hash)
    }
}

impl SeenHashes for BTreeSet<ContentHash> {
    fn contains_hash(&self, hash: &ContentHash) -> bool {
        self.contains(hash)
    }
}

impl<F: Fn(&ContentHash) -> bool> SeenHashes for F {
    fn contains_hash(&self, hash: &ContentHash) -> bool {
        self(hash)
    }
}

/// The result: the cleaned item unless a stage dropped it, every stage's report, and the content
/// hash for the caller to remember (set whenever the de-duplication stage ran).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    /// The cleaned item, or `None` when dropped.
    pub item: Option<Activity>,
    /// The reports of the stages that ran, in order.
    pub reports: Vec<StageReport>,
    /// The hash of the cleaned content.
    pub content_hash: Option<ContentHash>,
}

/// The pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    config: Config,
    sensitive: Vec<String>,
    markers: Vec<String>,
}

impl Pipeline {
    /// A pipeline with `config`.
    pub fn new(config: Config) -> Pipeline {
        let lower = |v: &[String]| v.iter().map(|s| s.to_lowercase()).filter(|s| !s.is_empty()).collect();
        Pipeline { sensitive: lower(&config.sensitive_apps), markers: lower(&config.private_title_markers), config }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs the seven stages over `item` for a user with `schedule`, against the `seen` hashes.
    pub fn process(&self, mut item: Activity, schedule: &Schedule, seen: &impl SeenHashes) -> Processed {
        let mut reports = Vec::with_capacity(7);
        let mut report = |stage, outcome| reports.push(StageReport { stage, outcome });
        let dropped = |reports: Vec<StageReport>| Processed { item: None, reports, content_hash: None };

        let app = item.app.to_lowercase();
        if let Some(hit) = self.sensitive.iter().find(|s| app.contains(s.as_str())) {
            report(Stage::SensitiveApp, Outcome::Dropped(format!("application matches the sensitive entry {hit:?}")));
            return dropped(reports);
        }
        report(Stage::SensitiveApp, Outcome::Kept);

        let title = item.title.to_lowercase();
        if item.private_window {
            report(Stage::PrivateWindow, Outcome::Dropped("the client reported a private window".into()));
            return dropped(reports);
        }
        if let Some(hit) = self.markers.iter().find(|m| title.contains(m.as_str())) {
            report(Stage::PrivateWindow, Outcome::Dropped(format!("the title marks a private window ({hit:?})")));
            return dropped(reports);
        }
        report(Stage::PrivateWindow, Outcome::Kept);

        if !schedule.allows(item.at) {
            report(Stage::TimeWindow, Outcome::Dropped("captured outside the user's allowed windows".into()));
            return dropped(reports);
        }
        report(Stage::TimeWindow, Outcome::Kept);

        let redactor = Redactor::tag();
        let title = redactor.redact(&item.title);
        let text = redactor.redact(&item.text);
        let mut counts: Vec<(Kind, usize)> = Vec::new();
        for f in title.findings.iter().chain(&text.findings) {
            match counts.iter_mut().find(|(k, _)| *k == f.kind) {
                Some((_, n)) => *n += 1,
                None => counts.push((f.kind, 1)),
            }
        }
        let (title, text) = (title.text.into_owned(), text.text.into_owned());
        if counts.is_empty() {
            report(Stage::PiiStrip, Outcome::Kept);
        } else {
            counts.sort();
            let list: Vec<String> = counts.iter().map(|(k, n)| format!("{k} x{n}")).collect();
            report(Stage::PiiStrip, Outcome::Altered(format!("replaced {}", list.join(", "))));
        }
        item.title = title;
        item.text = text;

        report(Stage::TitleCut, cut(&mut item.title, TITLE_MAX_CHARS));
        report(Stage::TextCut, cut(&mut item.text, TEXT_MAX_CHARS));

        let hash = content_hash(&item);
        if seen.contains_hash(&hash) {
            report(Stage::Dedup, Outcome::Dropped(format!("identical content was already stored ({hash})")));
            return Processed { item: None, reports, content_hash: Some(hash) };
        }
        report(Stage::Dedup, Outcome::Kept);
        Processed { item: Some(item), reports, content_hash: Some(hash) }
    }
}

/// Cuts `s` to at most `max` characters, on a character boundary.
fn cut(s: &mut String, max: usize) -> Outcome {
    match s.char_indices().nth(max) {
        Some((byte, _)) => {
            let total = s.chars().count();
            s.truncate(byte);
            Outcome::Altered(format!("cut from {total} to {max} characters"))
        }
        None => Outcome::Kept,
    }
}

/// The hash of the cleaned content (application, title, text; each length-prefixed so no two
/// items share an encoding).
pub fn content_hash(item: &Activity) -> ContentHash {
    let mut h = Sha256::new();
    for part in [&item.app, &item.title, &item.text] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    ContentHash(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn item(app: &str, title: &str, text: &str) -> Activity {
        Activity {
            app: app.into(),
            title: title.into(),
            text: text.into(),
            private_window: false,
            // Wednesday 2025-01-15 10:00 UTC.
            at: Utc.with_ymd_and_hms(2025, 1, 15, 10, 0, 0).unwrap(),
        }
    }

    fn stages(p: &Processed) -> Vec<(Stage, bool)> {
        p.reports.iter().map(|r| (r.stage, matches!(r.outcome, Outcome::Dropped(_)))).collect()
    }

    fn nobody_seen() -> HashSet<ContentHash> {
        HashSet::new()
    }

    #[test]
    fn a_clean_item_passes_all_seven_stages_in_order() {
        let p = Pipeline::new(Config::default()).process(
            item("Editor", "notes", "hello"),
            &Schedule::always(),
            &nobody_seen(),
        );
        let order: Vec<Stage> = p.reports.iter().map(|r| r.stage).collect();
        assert_eq!(
            order,
            [
                Stage::SensitiveApp,
                Stage::PrivateWindow,
                Stage::TimeWindow,
                Stage::PiiStrip,
                Stage::TitleCut,
                Stage::TextCut,
                Stage::Dedup
            ]
        );
        assert!(p.reports.iter().all(|r| r.outcome == Outcome::Kept));
        assert_eq!(p.item.unwrap().text, "hello");
        assert!(p.content_hash.is_some());
    }

    #[test]
    fn sensitive_applications_are_dropped_first_and_nothing_else_runs() {
        let p = Pipeline::new(Config::default()).process(
            item("com.1Password.mac", "vault", "x"),
            &Schedule::always(),
            &nobody_seen(),
        );
        assert_eq!(stages(&p), [(Stage::SensitiveApp, true)]);
        assert!(p.item.is_none() && p.content_hash.is_none());
        let custom = Config { sensitive_apps: vec!["Banking".into()], ..Config::default() };
        let p = Pipeline::new(custom).process(item("MyBankingApp", "", ""), &Schedule::always(), &nobody_seen());
        assert_eq!(stages(&p), [(Stage::SensitiveApp, true)]);
    }

    #[test]
    fn private_windows_are_dropped_by_flag_or_by_title() {
        let pipeline = Pipeline::new(Config::default());
        let mut flagged = item("Browser", "news", "");
        flagged.private_window = true;
        let p = pipeline.process(flagged, &Schedule::always(), &nobody_seen());
        assert_eq!(stages(&p), [(Stage::SensitiveApp, false), (Stage::PrivateWindow, true)]);
        let p = pipeline.process(
            item("Chrome", "Search - Google Chrome (Incognito)", ""),
            &Schedule::always(),
            &nobody_seen(),
        );
        assert_eq!(p.reports.last().unwrap().stage, Stage::PrivateWindow);
        assert!(p.item.is_none());
    }

    #[test]
    fn items_outside_the_users_windows_are_dropped_in_the_users_time_zone() {
        let nine_to_five = |offset_hours: i32| Schedule {
            offset: FixedOffset::east_opt(offset_hours * 3600).unwrap(),
            windows: vec![Window {
                days: Days::WEEKDAYS,
                start: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
                end: NaiveTime::from_hms_opt(17, 0, 0).unwrap(),
            }],
        };
        let pipeline = Pipeline::new(Config::default());
        // 10:00 UTC is 10:00 in London and 19:00 in Tokyo.
        assert!(pipeline.process(item("Editor", "", ""), &nine_to_five(0), &nobody_seen()).item.is_some());
        let p = pipeline.process(item("Editor", "", ""), &nine_to_five(9), &nobody_seen());
        assert_eq!(
            p.reports.last().unwrap(),
            &StageReport {
                stage: Stage::TimeWindow,
                outcome: Outcome::Dropped("captured outside the user's allowed windows".into())
            }
        );
        let mut saturday = item("Editor", "", "");
        saturday.at = Utc.with_ymd_and_hms(2025, 1, 18, 10, 0, 0).unwrap();
        assert!(pipeline.process(saturday, &nine_to_five(0), &nobody_seen()).item.is_none());
        let night = Schedule {
            offset: FixedOffset::east_opt(0).unwrap(),
            windows: vec![Window {
                days: Days::of(&[Weekday::Tue]),
                start: NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
                end: NaiveTime::from_hms_opt(11, 0, 0).unwrap(),
            }],
        };
        // Wednesday 10:00 is inside Tuesday's window running past midnight.
        assert!(pipeline.process(item("Editor", "", ""), &night, &nobody_seen()).item.is_some());
    }

    #[test]
    fn pii_is_stripped_from_title_and_text_and_reported_without_the_values() {
        let p = Pipeline::new(Config::default()).process(
            item("Mail", "Re: jane@example.com", "call +44 20 7946 0958 or jane@example.com"),
            &Schedule::always(),
            &nobody_seen(),
        );
        let out = p.item.unwrap();
        assert_eq!(out.title, "Re: [EMAIL]");
        assert_eq!(out.text, "call [PHONE_NUMBER] or [EMAIL]");
        let strip = p.reports.iter().find(|r| r.stage == Stage::PiiStrip).unwrap();
        assert_eq!(strip.outcome, Outcome::Altered("replaced email x2, phone_number x1".into()));
        assert!(!format!("{:?}", p.reports).contains("jane"));
    }

    #[test]
    fn titles_and_texts_are_cut_on_character_boundaries() {
        let title = "é".repeat(250);
        let text = "日本".repeat(3000);
        let p = Pipeline::new(Config::default()).process(
            item("Editor", &title, &text),
            &Schedule::always(),
            &nobody_seen(),
        );
        let out = p.item.unwrap();
        assert_eq!(out.title.chars().count(), TITLE_MAX_CHARS);
        assert_eq!(out.text.chars().count(), TEXT_MAX_CHARS);
        assert!(p.reports.contains(&StageReport {
            stage: Stage::TitleCut,
            outcome: Outcome::Altered("cut from 250 to 200 characters".into())
        }));
        assert!(p.reports.contains(&StageReport {
            stage: Stage::TextCut,
            outcome: Outcome::Altered("cut from 6000 to 5000 characters".into())
        }));
    }

    #[test]
    fn identical_cleaned_content_is_dropped_by_its_hash() {
        let pipeline = Pipeline::new(Config::default());
        let first = pipeline.process(item("Mail", "t", "mail a@example.com"), &Schedule::always(), &nobody_seen());
        let mut seen = HashSet::new();
        seen.insert(first.content_hash.unwrap());
        // Another address redacts to the same content.
        let again = pipeline.process(item("Mail", "t", "mail b@example.org"), &Schedule::always(), &seen);
        assert!(again.item.is_none());
        assert_eq!(again.content_hash, first.content_hash);
        assert!(matches!(
            again.reports.last().unwrap(),
            StageReport { stage: Stage::Dedup, outcome: Outcome::Dropped(_) }
        ));
        let other =
            pipeline.process(item("Mail", "t", "different"), &Schedule::always(), &|h: &ContentHash| seen.contains(h));
        assert!(other.item.is_some());
    }
}
