//! Just enough of MATLAB's level-5 MAT format to read the ILSVRC-2012 devkit's `meta.mat`: a
//! struct array `synsets` whose fields hold numbers and strings. Files come from strangers:
//! every size is checked against what remains before it is used, decompression is capped, and
//! nesting is bounded.
//!
//! Layout (little-endian files, header `IM`): a 128-byte header, then data elements. An
//! element is a tag (u32 type, u32 byte count) and its data padded to 8 bytes, or a "small"
//! element packed in 8 bytes (count in the tag's upper half, data in its second word). Type 15
//! is a zlib stream holding one element; type 14 is an array (flags, dimensions, name, then
//! its class's data: numbers, characters, or per element and field, a nested array).

use super::DataError;
use std::io::Read;
use std::path::Path;

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;
const MI_UTF16: u32 = 17;
const MI_UTF32: u32 = 18;

const MX_CELL: u8 = 1;
const MX_STRUCT: u8 = 2;
const MX_CHAR: u8 = 4;

/// The most bytes the file's compressed elements may inflate to in all (meta.mat's synsets are
/// ~1 MB).
const MAX_INFLATED: u64 = 64 << 20;
/// The most elements an array may claim.
const MAX_ELEMENTS: usize = 10_000_000;
/// The most fields a struct may have, and the longest field name.
const MAX_FIELDS: usize = 256;
const MAX_DEPTH: usize = 8;

/// A value read from the file.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Numbers(Vec<f64>),
    Text(String),
    /// A struct array: field names, then per element the fields' values in that order.
    Struct {
        fields: Vec<String>,
        elements: Vec<Vec<Value>>,
    },
    Cell(Vec<Value>),
    /// A class this reader does not need (sparse, objects, ...).
    Other,
}

impl Value {
    /// The field `name` of every element of a struct array.
    pub fn field(&self, name: &str) -> Option<Vec<&Value>> {
        let Value::Struct { fields, elements } = self else { return None };
        let k = fields.iter().position(|f| f == name)?;
        Some(elements.iter().map(|e| &e[k]).collect())
    }

    pub fn number(&self) -> Option<f64> {
        match self {
            Value::Numbers(v) if v.len() == 1 => Some(v[0]),
            _ => None,
        }
    }

    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn bad(&self, why: &str) -> DataError {
        DataError::layout(self.path, format!("not a MAT file this reader understands: {why} (at byte {})", self.pos))
    }

    fn u32_at(&self, at: usize) -> Result<u32, DataError> {
        let s = self.b.get(at..at + 4).ok_or_else(|| self.bad("cut short"))?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// The next element: its type and data; `None` at the end.
    fn element(&mut self) -> Result<Option<(u32, &'a [u8])>, DataError> {
        if self.pos >= self.b.len() {
            return Ok(None);
        }
        let first = self.u32_at(self.pos)?;
        if first >> 16 != 0 {
            // Small element: count in the upper half, at most 4 bytes of data.
            let (ty, n) = (first & 0xffff, (first >> 16) as usize);
            if n > 4 {
                return Err(self.bad("small element longer than 4 bytes"));
            }
            let data = self.b.get(self.pos + 4..self.pos + 4 + n).ok_or_else(|| self.bad("cut short"))?;
            self.pos += 8;
            return Ok(Some((ty, data)));
        }
        let n = self.u32_at(self.pos + 4)? as usize;
        let start = self.pos + 8;
        let end =
            start.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| self.bad("element runs past the end"))?;
        let data = &self.b[start..end];
        // Compressed elements are not padded; all others are, to 8 bytes.
        self.pos = if first == MI_COMPRESSED { end } else { end.div_ceil(8) * 8 };
        Ok(Some((first, data)))
    }
}

/// Reads the top-level variable `name` of the MAT file `path` (the others are skipped unread).
pub fn read(path: &Path, name: &str) -> Result<Option<Value>, DataError> {
    let bytes = crate::files::read_regular(path, 1 << 30).map_err(|e| DataError::io(path, e))?;
    parse(&bytes, path, name)
}

/// The variable `name` of a MAT file's bytes (named `path` in errors), if it has one.
///
/// Memory stays proportional to the bytes read: every array's stored values must number what
/// its dimensions say, a struct's elements must fit in the bytes that remain, and all the
/// file's compressed elements together may inflate to at most 64 MB.
pub fn parse(bytes: &[u8], path: &Path, name: &str) -> Result<Option<Value>, DataError> {
    if bytes.len() < 128 || &bytes[126..128] != b"IM" || !bytes.starts_with(b"MATLAB 5.0 MAT-file") {
        return Err(DataError::layout(
            path,
            "not a little-endian MATLAB 5 MAT file (v7.3 files are HDF5: save the devkit's meta.mat as it ships)",
        ));
    }
    let mut r = Reader { b: &bytes[128..], pos: 0, path };
    let mut budget = MAX_INFLATED;
    while let Some((ty, data)) = r.element()? {
        let inflated;
        let (ty, data) = if ty == MI_COMPRESSED {
            inflated = inflate(data, path, &mut budget)?;
            let mut inner = Reader { b: &inflated, pos: 0, path };
            inner.element()?.ok_or_else(|| inner.bad("empty compressed element"))?
        } else {
            (ty, data)
        };
        if ty == MI_MATRIX
            && let (n, Some(v)) = array(data, path, 0, Some(name))?
            && n == name
        {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// Inflates a zlib element, spending `budget` (the bytes left for the whole file).
fn inflate(data: &[u8], path: &Path, budget: &mut u64) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(*budget + 1)
        .read_to_end(&mut out)
        .map_err(|e| DataError::layout(path, format!("bad compressed element: {e}")))?;
    if out.len() as u64 > *budget {
        return Err(DataError::layout(path, "its compressed elements inflate to more than 64 MB"));
    }
    *budget -= out.len() as u64;
    Ok(out)
}

/// One array element's contents (after its tag): its name and, unless `only` names another
/// variable (then it is skipped unread), its value.
fn array(data: &[u8], path: &Path, depth: usize, only: Option<&str>) -> Result<(String, Option<Value>), DataError> {
    let mut r = Reader { b: data, pos: 0, path };
    if data.is_empty() {
        return Ok((String::new(), Some(Value::Numbers(Vec::new()))));
    }
    if depth > MAX_DEPTH {
        return Err(r.bad("arrays nested too deep"));
    }
    let (_, flags) = r.element()?.ok_or_else(|| r.bad("no array flags"))?;
    let class = *flags.first().ok_or_else(|| r.bad("empty array flags"))?;
    let (_, dims) = r.element()?.ok_or_else(|| r.bad("no dimensions"))?;
    let count = dims
        .chunks_exact(4)
        .map(|d| i32::from_le_bytes([d[0], d[1], d[2], d[3]]))
        .try_fold(1usize, |acc, d| usize::try_from(d).ok().and_then(|d| acc.checked_mul(d)))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| r.bad("dimensions out of range"))?;
    let (_, name) = r.element()?.ok_or_else(|| r.bad("no array name"))?;
    let name = String::from_utf8_lossy(name).into_owned();
    if only.is_some_and(|o| o != name) {
        return Ok((name, None));
    }
    let sub = |r: &mut Reader<'_>, what: &str| -> Result<Value, DataError> {
        let (ty, sub) = r.element()?.ok_or_else(|| r.bad(&format!("{what} cut short")))?;
        if ty != MI_MATRIX {
            return Err(r.bad(&format!("{what} that is not an array")));
        }
        Ok(array(sub, path, depth + 1, None)?.1.unwrap_or(Value::Other))
    };
    let value = match class {
        MX_STRUCT => {
            let fields = field_names(&mut r)?;
            // Every field of every element takes at least an 8-byte tag.
            if count.saturating_mul(fields.len()).saturating_mul(8) > data.len() - r.pos {
                return Err(r.bad("more struct elements than the bytes left could hold"));
            }
            let mut elements = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                let mut values = Vec::with_capacity(fields.len());
                for _ in &fields {
                    values.push(sub(&mut r, "a struct field")?);
                }
                elements.push(values);
            }
            Value::Struct { fields, elements }
        }
        MX_CELL => {
            if count.saturating_mul(8) > data.len() - r.pos {
                return Err(r.bad("more cells than the bytes left could hold"));
            }
            let mut items = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                items.push(sub(&mut r, "a cell")?);
            }
            Value::Cell(items)
        }
        MX_CHAR => {
            let Some((ty, chars)) = r.element()? else { return Ok((name, Some(Value::Text(String::new())))) };
            let text = text(ty, chars).ok_or_else(|| r.bad(&format!("characters stored as type {ty}")))?;
            if text.chars().count() > count {
                return Err(r.bad("more characters than the array's dimensions"));
            }
            Value::Text(text)
        }
        // The numeric classes (double, single, the integer ones), stored in any numeric type.
        6..=15 => match r.element()? {
            Some((ty, raw)) => {
                let v = numbers(ty, raw).ok_or_else(|| r.bad(&format!("numbers of type {ty}")))?;
                if v.len() != count {
                    return Err(r.bad("an array's values do not number what its dimensions say"));
                }
                Value::Numbers(v)
            }
            None => Value::Numbers(Vec::new()),
        },
        _ => Value::Other,
    };
    Ok((name, Some(value)))
}

/// A struct's field names: a length element, then the names, each NUL-padded to that length.
fn field_names(r: &mut Reader<'_>) -> Result<Vec<String>, DataError> {
    let (_, len) = r.element()?.ok_or_else(|| r.bad("no field name length"))?;
    let len = len.get(..4).map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize).unwrap_or(0);
    let (_, names) = r.element()?.ok_or_else(|| r.bad("no field names"))?;
    if len == 0 || len > MAX_FIELDS || names.is_empty() || names.len() % len != 0 || names.len() / len > MAX_FIELDS {
        return Err(r.bad("field names missing, too many, or not a whole number of names"));
    }
    Ok(names
        .chunks(len)
        .map(|n| String::from_utf8_lossy(n.split(|&c| c == 0).next().unwrap_or(&[])).into_owned())
        .collect())
}

/// Characters stored as type `ty`, decoded; `None` for a type characters are not stored in.
fn text(ty: u32, chars: &[u8]) -> Option<String> {
    Some(match ty {
        MI_UTF8 | MI_UINT8 | MI_INT8 => String::from_utf8_lossy(chars).into_owned(),
        MI_UINT16 | MI_UTF16 => char::decode_utf16(chars.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])))
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect(),
        MI_UTF32 => chars
            .chunks_exact(4)
            .map(|c| {
                char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]])).unwrap_or(char::REPLACEMENT_CHARACTER)
            })
            .collect(),
        _ => return None,
    })
}

fn numbers(ty: u32, raw: &[u8]) -> Option<Vec<f64>> {
    macro_rules! read {
        ($t:ty, $n:expr) => {
            raw.chunks_exact($n).map(|c| <$t>::from_le_bytes(c.try_into().unwrap()) as f64).collect()
        };
    }
    Some(match ty {
        MI_INT8 => read!(i8, 1),
        MI_UINT8 => read!(u8, 1),
        MI_INT16 => read!(i16, 2),
        MI_UINT16 => read!(u16, 2),
        MI_INT32 => read!(i32, 4),
        MI_UINT32 => read!(u32, 4),
        MI_SINGLE => read!(f32, 4),
        MI_DOUBLE => read!(f64, 8),
        MI_INT64 => read!(i64, 8),
        MI_UINT64 => read!(u64, 8),
        _ => return None,
    })
}

/// The devkit's `meta.mat`: ILSVRC2012_ID -> wnid of the 1000 leaf synsets (those with no
/// children), as torchvision reads it.
pub fn ilsvrc_ids(path: &Path) -> Result<std::collections::HashMap<u32, String>, DataError> {
    let synsets = read(path, "synsets")?
        .ok_or_else(|| DataError::layout(path, "no variable `synsets`: not the ILSVRC-2012 devkit's meta.mat"))?;
    let field =
        |f: &str| synsets.field(f).ok_or_else(|| DataError::layout(path, format!("`synsets` has no field `{f}`")));
    let (ids, wnids, children) = (field("ILSVRC2012_ID")?, field("WNID")?, field("num_children")?);
    let mut out = std::collections::HashMap::new();
    for ((id, wnid), kids) in ids.iter().zip(&wnids).zip(&children) {
        let bad =
            || DataError::layout(path, "a synset whose ILSVRC2012_ID, WNID or num_children is not a number or text");
        let (id, wnid, kids) =
            (id.number().ok_or_else(bad)?, wnid.text().ok_or_else(bad)?, kids.number().ok_or_else(bad)?);
        if kids == 0.0 {
            if !(id >= 1.0 && id <= u32::MAX as f64 && id.fract() == 0.0) {
                return Err(bad());
            }
            if let Some(other) = out.insert(id as u32, wnid.to_string()) {
                return Err(DataError::layout(path, format!("ILSVRC2012_ID {id} is both {other} and {wnid}")));
            }
        }
    }
    if out.is_empty() {
        return Err(DataError::layout(path, "no leaf synsets (num_children 0) in `synsets`"));
    }
    Ok(out)
}
