//! The journal of recent instruction results, so that a redelivered instruction is answered,
//! not executed again.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use surplus_protocol::InstructionResult;
use uuid::Uuid;

/// Recent instruction results by id, kept in `<data-dir>/journal.jsonl` so that a redelivered
/// instruction is answered, not executed again, even across a restart.
pub(super) struct Journal {
    path: PathBuf,
    results: HashMap<Uuid, InstructionResult>,
    order: VecDeque<Uuid>,
}

#[derive(Serialize, Deserialize)]
struct JournalEntry {
    id: Uuid,
    result: InstructionResult,
}

impl Journal {
    const KEEP: usize = 1000;

    pub(super) fn open(data_dir: &Path) -> Journal {
        let path = data_dir.join("journal.jsonl");
        let mut journal = Journal {
            path,
            results: HashMap::new(),
            order: VecDeque::new(),
        };
        if let Ok(text) = std::fs::read_to_string(&journal.path) {
            for entry in text
                .lines()
                .filter_map(|line| serde_json::from_str::<JournalEntry>(line).ok())
            {
                journal.remember(entry.id, entry.result);
            }
            if journal.order.len() < text.lines().count() {
                journal.compact();
            }
        }
        journal
    }

    fn remember(&mut self, id: Uuid, result: InstructionResult) {
        if self.results.insert(id, result).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > Self::KEEP {
            if let Some(old) = self.order.pop_front() {
                self.results.remove(&old);
            }
        }
    }

    pub(super) fn get(&self, id: Uuid) -> Option<InstructionResult> {
        self.results.get(&id).cloned()
    }

    pub(super) fn record(&mut self, id: Uuid, result: &InstructionResult) {
        self.remember(id, result.clone());
        let entry = JournalEntry {
            id,
            result: result.clone(),
        };
        // Never an empty line in place of a result that cannot be written down.
        let appended = serde_json::to_string(&entry)
            .map_err(std::io::Error::from)
            .and_then(|line| {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?;
                writeln!(file, "{line}")?;
                file.sync_data()
            });
        if let Err(error) = appended {
            tracing::warn!(%error, "writing the instruction journal");
        }
        if self.order.len() == Self::KEEP {
            self.compact();
        }
    }

    fn compact(&self) {
        let mut text = String::new();
        for id in &self.order {
            if let Some(result) = self.results.get(id)
                && let Ok(line) = serde_json::to_string(&JournalEntry {
                    id: *id,
                    result: result.clone(),
                })
            {
                text.push_str(&line);
                text.push('\n');
            }
        }
        if let Err(error) = crate::atomic_file::write(
            &self.path,
            text.as_bytes(),
            crate::atomic_file::Visibility::Ordinary,
        ) {
            tracing::warn!(%error, "compacting the instruction journal");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_answers_a_redelivered_instruction_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = Uuid::now_v7();
        let result = InstructionResult::Deleted {
            hash: "ab".repeat(32),
        };
        Journal::open(dir.path()).record(id, &result);
        let reopened = Journal::open(dir.path());
        assert_eq!(reopened.get(id), Some(result));
        assert_eq!(reopened.get(Uuid::now_v7()), None);
    }

    #[test]
    fn the_journal_keeps_only_recent_results() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut journal = Journal::open(dir.path());
        let ids: Vec<Uuid> = (0..Journal::KEEP + 5).map(|_| Uuid::now_v7()).collect();
        for id in &ids {
            journal.record(
                *id,
                &InstructionResult::Deleted {
                    hash: String::new(),
                },
            );
        }
        let reopened = Journal::open(dir.path());
        assert_eq!(reopened.get(ids[0]), None);
        assert!(reopened.get(ids[ids.len() - 1]).is_some());
        assert!(reopened.order.len() <= Journal::KEEP);
    }
}
