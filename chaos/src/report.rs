//! What a scenario expected, what it observed, and whether that holds, as a table.

use std::fmt::{self, Display};

/// One expectation of one scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The scenario.
    pub scenario: String,
    /// What the platform promises, with its bound.
    pub expectation: String,
    /// What was measured.
    pub observed: String,
    /// Whether the observation meets the expectation.
    pub pass: bool,
}

/// The checks of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    checks: Vec<Check>,
}

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one expectation and returns whether it passed.
    pub fn check(
        &mut self,
        scenario: &str,
        expectation: impl Display,
        observed: impl Display,
        pass: bool,
    ) -> bool {
        self.checks.push(Check {
            scenario: scenario.to_owned(),
            expectation: expectation.to_string(),
            observed: observed.to_string(),
            pass,
        });
        pass
    }

    /// Every check so far.
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }

    /// The failed checks.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.pass).collect()
    }
}

impl Display for Report {
    /// `scenario | expectation | observed | result`, columns aligned.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = ["scenario", "expectation", "observed", "result"];
        let rows: Vec<[&str; 4]> = self
            .checks
            .iter()
            .map(|c| {
                [
                    c.scenario.as_str(),
                    c.expectation.as_str(),
                    c.observed.as_str(),
                    if c.pass { "pass" } else { "FAIL" },
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: [&str; 4]| {
            for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
                let sep = if i == 0 { "" } else { " | " };
                // The last column is not padded: no trailing blanks.
                let pad = if i == 3 {
                    0
                } else {
                    width - cell.chars().count()
                };
                write!(f, "{sep}{cell}{}", " ".repeat(pad))?;
            }
            writeln!(f)
        };
        line(f, header)?;
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        writeln!(f, "{}", rule.join("-+-"))?;
        for row in rows {
            line(f, row)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_and_says_fail() {
        let mut report = Report::new();
        assert!(report.check("postgres", "opens within 10 s", "2.1 s", true));
        assert!(!report.check("postgres", "fails fast", "p99 1003 ms", false));
        let table = report.to_string();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("scenario | expectation"));
        assert!(lines[3].ends_with("FAIL"));
        assert_eq!(lines[2].find('|'), lines[3].find('|'));
        assert!(!report.passed());
        assert_eq!(report.failures().len(), 1);
    }
}
