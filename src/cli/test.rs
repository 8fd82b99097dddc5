use std::path::PathBuf;

use crate::rules::unit::TestFile;

/// `klaxon test FILE...`
pub fn run(files: &[PathBuf]) -> i32 {
    let (mut passed, mut failed) = (0, 0);
    for f in files {
        let report = TestFile::load(f).map_err(|e| vec![e]).and_then(|t| t.run());
        match report {
            Ok(r) => {
                passed += r.passed;
                failed += r.failures.len();
                if r.failures.is_empty() {
                    println!("ok    {} ({} tests)", f.display(), r.passed);
                }
                for fail in &r.failures {
                    println!("FAIL  {}: {}\n  {}", f.display(), fail.case, fail.message);
                }
            }
            Err(es) => {
                failed += 1;
                for e in es {
                    println!("ERROR {e}");
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    i32::from(failed > 0)
}
