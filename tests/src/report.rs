//! Reading constat's text report back in the tests.

/// The report's rows (after the dashes, before the ERRORS / LOST lines and the `--bytes`
/// total's dashes), spaces collapsed.
pub fn rows(report: &str) -> Vec<String> {
    report
        .lines()
        .skip_while(|l| !l.starts_with("-----"))
        .skip(1)
        .take_while(|l| {
            !l.ends_with(" ERRORS")
                && !l.contains(" EVENTS LOST ")
                && !l.is_empty()
                && !l.starts_with("-----")
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}
