use std::path::PathBuf;

use crate::config::{file_kind, load_rules, read_yaml, yaml_files, FileKind};
use crate::rules::unit::TestFile;

/// `klaxon check PATH...`
pub fn run(paths: &[PathBuf]) -> i32 {
    let mut errors = Vec::new();
    let mut rules = 0;
    match load_rules(paths) {
        Ok(set) => rules = set.rules.len(),
        Err(mut es) => errors.append(&mut es),
    }
    let mut tests = 0;
    match yaml_files(paths) {
        Ok(files) => {
            for f in files {
                let Ok(doc) = read_yaml(&f) else { continue }; // already reported
                if file_kind(&doc) != FileKind::Tests {
                    continue;
                }
                match TestFile::load(&f) {
                    Ok(t) => match t.check() {
                        Ok(()) => tests += 1,
                        Err(mut es) => errors.append(&mut es),
                    },
                    Err(e) => errors.push(e),
                }
            }
        }
        Err(e) => errors.push(e),
    }
    if errors.is_empty() {
        println!("ok: {rules} rules, {tests} rule test files");
        0
    } else {
        for e in &errors {
            eprintln!("{e}");
        }
        eprintln!("{} error(s)", errors.len());
        1
    }
}
