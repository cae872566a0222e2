//! Read-only memory maps: the one place model files become `&[u8]` without a copy.

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::Path;

/// A read-only view of a whole file, mapped so that weights are used in place.
#[derive(Debug)]
pub struct MappedFile {
    map: Option<memmap2::Mmap>,
}

impl MappedFile {
    pub fn open(path: &Path) -> io::Result<MappedFile> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        if len == 0 {
            // mmap of length 0 fails on Linux; an empty file is still a valid (too short) input.
            return Ok(MappedFile { map: None });
        }
        // SAFETY: the map is read-only and private to this process. Another process truncating or rewriting
        // the file while it is mapped would be undefined behaviour; sail-edge never writes a file it has
        // mapped (its writers always create a new temporary file and rename it into place), which is the
        // same contract llama.cpp and every mmap-based runtime rely on.
        let map = unsafe { memmap2::MmapOptions::new().map(&file)? };
        Ok(MappedFile { map: Some(map) })
    }

    /// Tell the kernel the pages of `range` are not needed any more, so that streaming through a file far
    /// larger than RAM (conversion, quantization) keeps its resident set bounded. Reading the range again
    /// later is still correct: a private read-only file mapping simply faults the pages back in.
    pub fn release(&self, start: usize, len: usize) {
        let Some(map) = &self.map else { return };
        let start = start.min(map.len());
        let len = len.min(map.len() - start);
        if len == 0 {
            return;
        }
        // SAFETY: MADV_DONTNEED on a read-only, file-backed private mapping discards only clean page-cache
        // references; later reads re-fault identical file contents, so no Rust reference observes a change.
        #[cfg(unix)]
        let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len) };
    }

    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

impl Deref for MappedFile {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes()
    }
}
