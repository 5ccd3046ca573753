//! placeholder: being written
use std::collections::BTreeMap;
pub trait Adaptor { fn field(&self, fieldpath: &[String]) -> Option<String>; }
pub fn map_field(fieldpath: &[String], map: &BTreeMap<String, String>) -> Option<String> { map.get(&fieldpath.join(".")).cloned() }
