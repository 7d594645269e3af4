//! The kernel's cpulist syntax (`0-3,8,10-11`), used by `possible`, `present` and `online`.
// STUB: owned by the parsers work.

use super::ParseError;
use crate::model::CpuSet;

pub fn parse(file: &str, text: &str) -> Result<CpuSet, ParseError> {
    let _ = (file, text);
    todo!("cpulist parser")
}
