//! No personal data in output: everything the binary printed during the suite (kept by
//! `tests/common` in [`common::OUTPUT_DIR`]) is searched for the identifying values of
//! every person of every store the suite generated. `scripts/test` runs the scan after
//! the suite (it is ignored in a plain `cargo test`, which would run it alongside).

mod common;

use std::collections::BTreeSet;

use aho_corasick::AhoCorasick;
use wc_retention::fixture::{identifying_values, person};

/// A value found in the output: which file and line, and whose value it is.
#[derive(Debug)]
struct Hit {
    file: String,
    line: usize,
    seed: u64,
    subject: u64,
    value: String,
}

/// The people's values of the stores (seed, subjects), with their owner.
fn people(stores: &BTreeSet<(u64, u64)>) -> Vec<(u64, u64, String)> {
    let mut values = Vec::new();
    for &(seed, subjects) in stores {
        for subject in 0..subjects {
            for value in identifying_values(&person(seed, subject)) {
                if !value.is_empty() {
                    values.push((seed, subject, value));
                }
            }
        }
    }
    values
}

/// Whether the byte at `i` joins a word (a value inside a longer word is not that value:
/// the last name "Bos" inside "Bosch").
fn word_byte(text: &str, i: Option<usize>) -> bool {
    i.and_then(|i| text.as_bytes().get(i))
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b >= 0x80)
}

/// Every occurrence of a value, as a whole word, in the named texts.
fn scan(values: &[(u64, u64, String)], texts: &[(String, String)]) -> Vec<Hit> {
    let matcher = AhoCorasick::new(values.iter().map(|(_, _, v)| v)).expect("build the matcher");
    let mut hits = Vec::new();
    for (file, text) in texts {
        for m in matcher.find_overlapping_iter(text) {
            if word_byte(text, m.start().checked_sub(1)) || word_byte(text, Some(m.end())) {
                continue;
            }
            let (seed, subject, value) = &values[m.pattern().as_usize()];
            hits.push(Hit {
                file: file.clone(),
                line: text[..m.start()].matches('\n').count() + 1,
                seed: *seed,
                subject: *subject,
                value: value.clone(),
            });
        }
    }
    hits
}

#[test]
#[ignore = "run by scripts/test after the suite"]
fn the_suites_output_holds_no_personal_data() {
    let mut stores = BTreeSet::new();
    let mut texts = Vec::new();
    let entries = std::fs::read_dir(common::OUTPUT_DIR)
        .unwrap_or_else(|e| panic!("{}: {e}: run the suite first (scripts/test does)", common::OUTPUT_DIR));
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        if name.starts_with("stores-") {
            for line in text.lines() {
                let (seed, subjects) = line.split_once(' ').expect("a stores line is: seed subjects");
                stores.insert((seed.parse().unwrap(), subjects.parse().unwrap()));
            }
        } else {
            texts.push((name, text));
        }
    }
    let values = people(&stores);
    let lines: usize = texts.iter().map(|(_, t)| t.lines().count()).sum();
    assert!(
        !stores.is_empty() && lines > 1000,
        "too little to scan ({} stores, {lines} lines): did the suite run?",
        stores.len()
    );
    let hits = scan(&values, &texts);
    println!(
        "hardening: personal-data scan: {lines} lines of output from {} test processes, {} values of {} people in {} stores: {} hits",
        texts.len(),
        values.len(),
        values.iter().map(|(seed, s, _)| (seed, s)).collect::<BTreeSet<_>>().len(),
        stores.len(),
        hits.len()
    );
    let shown: Vec<String> = hits
        .iter()
        .take(20)
        .map(|h| {
            format!(
                "{} line {}: {:?} of subject {} of the store with seed {}",
                h.file, h.line, h.value, h.subject, h.seed
            )
        })
        .collect();
    assert!(hits.is_empty(), "personal data in the output:\n{}", shown.join("\n"));
}

/// The scan itself can fail: it finds a person's values as words, and only as words.
#[test]
fn the_scan_finds_planted_values_and_only_whole_words() {
    let stores = BTreeSet::from([(7, 3)]);
    let values = people(&stores);
    let p = person(7, 2);
    let log = format!(
        "{{\"message\":\"run started\"}}\n{{\"error\":\"duplicate entry '{}'\"}}\nname={}\n",
        p.email,
        p.full_name()
    );
    let hits = scan(&values, &[("output-1".into(), log)]);
    let found: BTreeSet<(u64, &str)> = hits.iter().map(|h| (h.subject, h.value.as_str())).collect();
    assert!(found.contains(&(2, p.email.as_str())), "{hits:?}");
    assert!(found.contains(&(2, p.full_name().as_str())), "{hits:?}");
    assert!(hits.iter().all(|h| h.subject == 2 && h.line >= 2), "{hits:?}");

    let inside = format!("x{}y and {}z", p.last_name, p.last_name);
    assert!(scan(&values, &[("output-2".into(), inside)]).is_empty());
}
