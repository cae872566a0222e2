//! Read-only memory maps: the one place model files become `&[u8]` without a copy, and the one place (with
//! the kernels) that talks to the OS about those pages: access-pattern advice, prefetch, release and
//! residency queries (`madvise`, `posix_fadvise`, `mincore`).

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::Path;

/// A read-only view of a whole file, mapped so that weights are used in place.
#[derive(Debug)]
pub struct MappedFile {
    map: Option<memmap2::Mmap>,
    /// Kept open for `posix_fadvise` (dropping page-cache pages of released ranges).
    #[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
    file: File,
}

/// The OS page size (4096 where it cannot be asked).
pub fn page_size() -> usize {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no memory-safety preconditions; it only reads a system constant.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if n > 0 {
            return n as usize;
        }
    }
    4096
}

/// Flush a file to disk and drop its pages from the page cache (`fsync`, then
/// `posix_fadvise(POSIX_FADV_DONTNEED)` over the whole file), so that the next reader starts cold. Pages
/// mapped by a live process stay. A no-op where the OS has no such call. Mostly for tests and benchmarks.
pub fn evict_from_page_cache(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    file.sync_all()?;
    // posix_fadvise is Linux's (and Android's); macOS and iOS have none.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: posix_fadvise only takes an open descriptor (owned by `file`, alive for the call) and plain
        // integers; it never touches our memory.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}

impl MappedFile {
    pub fn open(path: &Path) -> io::Result<MappedFile> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        if len == 0 {
            // mmap of length 0 fails on Linux; an empty file is still a valid (too short) input.
            return Ok(MappedFile { map: None, file });
        }
        // SAFETY: the map is read-only and private to this process. Another process truncating or rewriting
        // the file while it is mapped would be undefined behaviour; sail-edge never writes a file it has
        // mapped (its writers always create a new temporary file and rename it into place), which is the
        // same contract llama.cpp and every mmap-based runtime rely on.
        let map = unsafe { memmap2::MmapOptions::new().map(&file)? };
        Ok(MappedFile { map: Some(map), file })
    }

    /// `(start, len)` clipped to the map; `None` when nothing is left.
    fn clip(&self, start: usize, len: usize) -> Option<(&memmap2::Mmap, usize, usize)> {
        let map = self.map.as_ref()?;
        let start = start.min(map.len());
        let len = len.min(map.len() - start);
        (len > 0).then_some((map, start, len))
    }

    /// Tell the kernel the pages of `range` are not needed any more, so that streaming through a file far
    /// larger than RAM (conversion, quantization) keeps its resident set bounded. Reading the range again
    /// later is still correct: a private read-only file mapping simply faults the pages back in.
    pub fn release(&self, start: usize, len: usize) {
        let Some((map, start, len)) = self.clip(start, len) else { return };
        // SAFETY: MADV_DONTNEED on a read-only, file-backed private mapping discards only clean page-cache
        // references; later reads re-fault identical file contents, so no Rust reference observes a change.
        #[cfg(unix)]
        let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len) };
        #[cfg(not(unix))]
        let _ = (map, start, len);
    }

    /// [`release`](Self::release), then drop the range's pages from the page cache too
    /// (`POSIX_FADV_DONTNEED`), so the memory really goes back to the system rather than lingering as cache.
    /// Only pages wholly inside the range and mapped by no one are dropped (a page shared with a neighbouring
    /// range stays); later reads fault them back in from the file.
    pub fn evict(&self, start: usize, len: usize) {
        let Some((_, start, len)) = self.clip(start, len) else { return };
        self.release(start, len);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: posix_fadvise takes the descriptor we own and integers; it never touches our memory.
            // Dropping clean page-cache pages cannot change what the mapping reads: they are re-read from the
            // (unchanged) file on the next fault.
            let _ = unsafe {
                libc::posix_fadvise(
                    self.file.as_raw_fd(),
                    start as libc::off_t,
                    len as libc::off_t,
                    libc::POSIX_FADV_DONTNEED,
                )
            };
        }
    }

    /// Faults in `range` will be random (`MADV_RANDOM`): the kernel reads only the faulting page, not the
    /// neighbouring pages (on a MoE file those belong to other experts). The advice covers whole pages.
    pub fn advise_random(&self, start: usize, len: usize) {
        let Some((map, start, len)) = self.clip(start, len) else { return };
        #[cfg(unix)]
        let _ = map.advise_range(memmap2::Advice::Random, start, len);
        #[cfg(not(unix))]
        let _ = (map, start, len);
    }

    /// Start reading `range` in the background (`MADV_WILLNEED`): the call returns at once, the pages arrive
    /// in the page cache while the caller computes, and later faults find them there.
    pub fn prefetch(&self, start: usize, len: usize) {
        let Some((map, start, len)) = self.clip(start, len) else { return };
        #[cfg(unix)]
        let _ = map.advise_range(memmap2::Advice::WillNeed, start, len);
        #[cfg(not(unix))]
        let _ = (map, start, len);
    }

    /// Bytes of `range` whose pages are resident in memory (page cache), by `mincore`; a page that straddles
    /// the range's ends counts only for its part inside. `None` where the OS cannot say.
    pub fn resident_bytes(&self, start: usize, len: usize) -> Option<usize> {
        let Some((map, start, len)) = self.clip(start, len) else { return Some(0) };
        #[cfg(unix)]
        {
            let page = page_size();
            let first = start / page * page;
            let end = start + len;
            let span = end - first;
            let n_pages = span.div_ceil(page);
            let mut vec = vec![0u8; n_pages];
            // SAFETY: `first` is page-aligned within the map (the map itself starts on a page boundary) and
            // `first + span` ends inside the map's last page; mincore writes exactly one byte per page of
            // that span into `vec`, which holds `n_pages` bytes. It reads no memory of ours.
            let rc = unsafe {
                libc::mincore(map.as_ptr().add(first) as *mut libc::c_void, span, vec.as_mut_ptr() as *mut _)
            };
            if rc != 0 {
                return None;
            }
            let mut bytes = 0;
            for (i, v) in vec.iter().enumerate() {
                if v & 1 != 0 {
                    let p0 = (first + i * page).max(start);
                    let p1 = (first + (i + 1) * page).min(end);
                    bytes += p1 - p0;
                }
            }
            Some(bytes)
        }
        #[cfg(not(unix))]
        {
            let _ = (map, start, len);
            None
        }
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
