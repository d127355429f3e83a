//! The end-to-end harness: builders that start Tally's binaries as real processes, on ports
//! the OS picks, with their data in temporary directories.
