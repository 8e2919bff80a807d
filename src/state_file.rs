//! Engine state files on disk: the I/O around [`Engine::save_state`] and
//! [`Engine::restore_state`] (the engine itself stays free of I/O).
//!
//! `spikewatch replay --save-state FILE` writes one after a backtest; `--initial-state FILE`
//! (and later `spikewatch run --initial-state FILE`) starts from it, so a new deployment
//! begins with the seasonality learned from history instead of waiting weeks.
//!
//! Writes are atomic: the bytes go to a temporary file next to the target, are synced, and
//! the temporary file is renamed over the target. A crash leaves either the old file or the
//! new one, never half of one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::engine::{Engine, RestoreReport, StateError};

/// A state file that cannot be read, used or written. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("{}: cannot read the state file: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: not a spikewatch state file (it does not start with the state file magic bytes; was it written by `spikewatch replay --save-state`?)", path.display())]
    NotAStateFile { path: PathBuf },
    #[error("{}: the state file cannot be used: {source}", path.display())]
    Unusable { path: PathBuf, source: StateError },
    #[error("{}: cannot write the state file: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

impl StateFileError {}

/// Restores `engine` (a fresh one: nothing observed yet) from the state file at `path`.
///
/// A file that is not a state file, or whose clock record is damaged, is an error; a damaged
/// series record is skipped and listed in [`RestoreReport::skipped`] (that series starts
/// afresh from new input).
pub fn read_state_file(path: &Path, engine: &mut Engine) -> Result<RestoreReport, StateFileError> {
    let bytes = fs::read(path).map_err(|source| StateFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    engine.restore_state(&bytes).map_err(|source| match source {
        StateError::BadMagic => StateFileError::NotAStateFile {
            path: path.to_path_buf(),
        },
        source => StateFileError::Unusable {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Writes the state of `engine` to `path` atomically (temporary file, sync, rename). Returns
/// the number of bytes written.
pub fn write_state_file(path: &Path, engine: &Engine) -> Result<u64, StateFileError> {
    let bytes = engine.save_state();
    write_atomically(path, &bytes).map_err(|source| StateFileError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(bytes.len() as u64)
}

/// `dir/.name.tmp-PID`: hidden, in the same directory (so the rename stays on one file system).
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path names a directory, not a file",
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    Ok(path.with_file_name(tmp_name))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path)?;
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Make the rename itself durable where the platform allows syncing a directory.
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::Observation;

    fn engine_with_data() -> Engine {
        let mut e = Engine::new(Config::default());
        for m in 0..30 {
            e.observe(Observation {
                service: "telegram",
                geo: "IT-RM",
                signal: "complaints",
                ts_ms: 1_704_067_200_000 + m * 60_000,
                amount: 3.0,
            })
            .unwrap();
        }
        e
    }

    #[test]
    fn round_trip_through_a_file_and_no_temp_file_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.bin");
        let engine = engine_with_data();
        let n = write_state_file(&path, &engine).unwrap();
        assert_eq!(n, fs::metadata(&path).unwrap().len());
        // Overwriting an existing file works too.
        write_state_file(&path, &engine).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.bin")]);

        let mut restored = Engine::new(Config::default());
        let report = read_state_file(&path, &mut restored).unwrap();
        assert_eq!(report.restored, engine.series_count());
        assert!(report.skipped.is_empty());
        assert_eq!(restored.export_series(), engine.export_series());
        assert_eq!(restored.clock(), engine.clock());
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.state");
        let e = read_state_file(&missing, &mut Engine::new(Config::default())).unwrap_err();
        assert!(matches!(e, StateFileError::Read { .. }));
        assert!(e.to_string().contains("missing.state"), "{e}");

        let text = dir.path().join("notes.txt");
        fs::write(&text, "timestamp,value\n").unwrap();
        let e = read_state_file(&text, &mut Engine::new(Config::default())).unwrap_err();
        assert!(matches!(e, StateFileError::NotAStateFile { .. }), "{e:?}");
        assert!(e.to_string().contains("notes.txt"), "{e}");
        assert!(e.to_string().contains("not a spikewatch state file"), "{e}");

        let empty = dir.path().join("empty.state");
        fs::write(&empty, b"").unwrap();
        let e = read_state_file(&empty, &mut Engine::new(Config::default())).unwrap_err();
        assert!(matches!(e, StateFileError::NotAStateFile { .. }), "{e:?}");

        let no_dir = dir.path().join("no/such/dir/state.bin");
        let e = write_state_file(&no_dir, &engine_with_data()).unwrap_err();
        assert!(matches!(e, StateFileError::Write { .. }));
        assert!(e.to_string().contains("state.bin"), "{e}");
    }
}
