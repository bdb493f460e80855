//! The pure core: retention decisions from facts read from the store and a `now` passed
//! in. No I/O and no clock reads, so every decision is testable with plain values.

pub mod fiscal;
