//! Just enough of Python's pickle (protocol 2-5) to read what `torch.save` writes for a state
//! dict: dicts, tuples, lists, strings, numbers, `collections.OrderedDict`, and tensors rebuilt
//! by `torch._utils._rebuild_tensor_v2` from persistent storage ids. Nothing is ever executed:
//! a global outside [`ALLOWED_GLOBALS`] is refused by name, and calls (`REDUCE`) are interpreted
//! only for the few allowed callables.
//!
//! The input is untrusted (`.pth` files come from the internet), so every resource the reader
//! spends is bounded by the input or by a fixed limit, and no input can make it panic:
//! - the interpreter never recurses; values nest at most [`MAX_DEPTH`] levels (checked as they
//!   are built), so dropping, cloning or comparing a [`Value`] recurses at most that deep;
//! - at most [`MAX_VALUES`] values (container elements included) and [`MAX_PAYLOAD_BYTES`] of
//!   string and bytes payload are created per pickle, counting every copy a memo lookup makes,
//!   so a short pickle that doubles a list through the memo fails fast instead of exhausting
//!   memory;
//! - every length and offset is checked against the remaining input before anything is sized
//!   from it.

use super::{InteropError, Result};
use std::collections::HashMap;

/// How deeply containers (and open `MARK`s) may nest.
pub const MAX_DEPTH: usize = 1000;
/// How many values one pickle may create, copies from the memo included.
pub const MAX_VALUES: u64 = 10_000_000;
/// How many bytes of strings and bytes one pickle may create, copies from the memo included.
pub const MAX_PAYLOAD_BYTES: u64 = 64 << 20;

/// The only globals a pickle may name: what `torch.save` writes for a state dict of
/// floating-point tensors. (The integer storages are accepted as type tags only, so that such
/// tensors are reported as unsupported types rather than refused.)
pub const ALLOWED_GLOBALS: &[(&str, &str)] = &[
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "FloatStorage"),
    ("torch", "DoubleStorage"),
    ("torch", "HalfStorage"),
    ("torch", "BFloat16Storage"),
    ("torch", "LongStorage"),
    ("torch", "IntStorage"),
    ("torch", "ShortStorage"),
    ("torch", "CharStorage"),
    ("torch", "ByteStorage"),
    ("torch", "BoolStorage"),
];

/// A storage reference from a persistent id: `('storage', torch.FloatStorage, key, location, numel, ...)`.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageRef {
    pub key: String,
    /// `FloatStorage`, `HalfStorage`, ...
    pub kind: String,
    pub numel: usize,
}

/// A tensor: a view into a storage.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    pub storage: StorageRef,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// A pickled value. The large variants are boxed so that a value is 32 bytes: the value limit
/// bounds memory too.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// An integer wider than 64 bits, as its little-endian two's-complement bytes.
    BigInt(Vec<u8>),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Insertion-ordered, as `OrderedDict` and Python dicts are.
    Dict(Vec<(Value, Value)>),
    /// `(module, name)`, one of [`ALLOWED_GLOBALS`].
    Global(Box<(String, String)>),
    Storage(Box<StorageRef>),
    Tensor(Box<TensorRef>),
    /// An object we do not build (no longer produced: globals outside the allowed list are refused).
    Object(String),
    /// Not produced: marks are kept apart from the values.
    Mark,
}

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(InteropError::Format(msg.into()))
}

fn limit<T>(msg: impl Into<String>) -> Result<T> {
    Err(InteropError::Limit(msg.into()))
}

/// At most this many characters of a string in a message.
fn clip(s: &str) -> String {
    const N: usize = 60;
    match s.char_indices().nth(N) {
        Some((i, _)) => format!("{:?}...", &s[..i]),
        None => format!("{s:?}"),
    }
}

impl Value {
    /// A short description for error messages: never the whole of a (possibly huge) value.
    pub fn describe(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(b) => format!("{b}"),
            Value::Int(i) => format!("the integer {i}"),
            Value::Float(f) => format!("the float {f}"),
            Value::BigInt(b) => format!("a {}-byte integer", b.len()),
            Value::Str(s) => format!("the string {}", clip(s)),
            Value::Bytes(b) => format!("{} bytes", b.len()),
            Value::Tuple(v) => format!("a tuple of {} items", v.len()),
            Value::List(v) => format!("a list of {} items", v.len()),
            Value::Dict(v) => format!("a dict of {} items", v.len()),
            Value::Global(g) => format!("the class {}.{}", clip(&g.0), clip(&g.1)),
            Value::Storage(s) => format!("a {} storage", clip(&s.kind)),
            Value::Tensor(t) => format!("a tensor of shape {:?}", t.shape),
            Value::Object(o) => format!("an object {}", clip(o)),
            Value::Mark => "a MARK".into(),
        }
    }
    fn as_usize(&self) -> Result<usize> {
        match self {
            Value::Int(i) if *i >= 0 => usize::try_from(*i).map_err(|_| format!("{i} does not fit in usize").into()),
            v => err(format!("expected a non-negative integer, got {}", v.describe())),
        }
    }
    fn as_usizes(&self) -> Result<Vec<usize>> {
        match self {
            Value::Tuple(v) | Value::List(v) => v.iter().map(Value::as_usize).collect(),
            v => err(format!("expected a tuple of integers, got {}", v.describe())),
        }
    }
    fn as_str(&self) -> Result<&str> {
        match self {
            Value::Str(s) => Ok(s),
            v => err(format!("expected a string, got {}", v.describe())),
        }
    }
    /// Bytes of string payload held directly (not in children).
    fn payload(&self) -> u64 {
        let n = match self {
            Value::BigInt(b) | Value::Bytes(b) => b.len(),
            Value::Str(s) | Value::Object(s) => s.len(),
            Value::Global(g) => g.0.len().saturating_add(g.1.len()),
            Value::Storage(s) => s.key.len().saturating_add(s.kind.len()),
            Value::Tensor(t) => t
                .storage
                .key
                .len()
                .saturating_add(t.storage.kind.len())
                .saturating_add(t.shape.len().saturating_add(t.stride.len()).saturating_mul(8)),
            _ => 0,
        };
        u64::try_from(n).unwrap_or(u64::MAX)
    }
}

/// A value on the stack or in the memo, with what it costs: how deep it nests, how many values
/// and payload bytes it holds (itself included), so that copying it can be charged.
#[derive(Clone)]
struct Item {
    v: Value,
    depth: usize,
    values: u64,
    bytes: u64,
}

impl Item {
    /// Takes in `child` (a container element): updates depth and cost.
    fn adopt(&mut self, child: &Item) -> Result<()> {
        self.depth = self.depth.max(nested(child.depth)?);
        self.values = self.values.saturating_add(child.values);
        self.bytes = self.bytes.saturating_add(child.bytes);
        Ok(())
    }
}

/// The depth of a container holding something `depth` deep.
fn nested(depth: usize) -> Result<usize> {
    match depth.checked_add(1) {
        Some(d) if d <= MAX_DEPTH => Ok(d),
        _ => limit(format!("pickle nests deeper than {MAX_DEPTH} levels")),
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let left = self.b.len().saturating_sub(self.pos);
        let s = self.pos.checked_add(n).and_then(|end| self.b.get(self.pos..end));
        match s {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => err(format!("pickle ends early: {n} bytes wanted at byte {}, {left} left", self.pos)),
        }
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// A length field: checked against the remaining input before anything is sized from it.
    fn len(&mut self, field: u64) -> Result<usize> {
        let left = self.b.len().saturating_sub(self.pos);
        match usize::try_from(field) {
            Ok(n) if n <= left => Ok(n),
            _ => err(format!("pickle length {field} at byte {} is beyond the {left} bytes left", self.pos)),
        }
    }
    fn line(&mut self) -> Result<String> {
        let rest = self.b.get(self.pos..).unwrap_or_default();
        let n = rest.iter().position(|&c| c == b'\n').ok_or("pickle ends inside a GLOBAL's name")?;
        let s = String::from_utf8_lossy(self.take(n)?).into_owned();
        self.pos += 1;
        Ok(s)
    }
    fn utf8(&mut self, n: usize) -> Result<String> {
        let at = self.pos;
        std::str::from_utf8(self.take(n)?)
            .map(str::to_owned)
            .map_err(|e| InteropError::Format(format!("string at byte {at}: {e}")))
    }
}

/// A global, if it is one `torch.save` writes for a state dict.
fn global(module: &str, name: &str) -> Result<Value> {
    if ALLOWED_GLOBALS.iter().any(|&(m, n)| m == module && n == name) {
        Ok(Value::Global(Box::new((module.into(), name.into()))))
    } else {
        Err(InteropError::Refused(format!(
            "refusing pickle global {}.{}: only torch.save's state-dict types are read",
            module.escape_debug(),
            name.escape_debug()
        )))
    }
}

/// Applies a callable from a `GLOBAL` to its arguments (`REDUCE`, `NEWOBJ`).
fn reduce(func: Value, args: Value) -> Result<Value> {
    let Value::Global(g) = &func else { return err(format!("cannot call {}", func.describe())) };
    let (module, name) = (g.0.as_str(), g.1.as_str());
    let args = match args {
        Value::Tuple(a) => a,
        a => return err(format!("arguments of {module}.{name} are not a tuple but {}", a.describe())),
    };
    match (module, name) {
        ("collections", "OrderedDict") if args.is_empty() => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let storage = match args.first() {
                Some(Value::Storage(s)) => (**s).clone(),
                a => {
                    let got = a.map_or("nothing".into(), Value::describe);
                    return err(format!("{name}: expected a storage, got {got}"));
                }
            };
            let get = |i: usize| args.get(i).ok_or_else(|| format!("{name}: missing argument {i}"));
            Ok(Value::Tensor(Box::new(TensorRef {
                storage,
                offset: get(1)?.as_usize()?,
                shape: get(2)?.as_usizes()?,
                stride: get(3)?.as_usizes()?,
            })))
        }
        ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
            match args.into_iter().next() {
                Some(t @ Value::Tensor(_)) => Ok(t),
                a => err(format!("{name}: expected a tensor, got {}", a.map_or("nothing".into(), |a| a.describe()))),
            }
        }
        _ => err(format!("cannot call {module}.{name} with {} arguments", args.len())),
    }
}

fn persistent(pid: Value) -> Result<Value> {
    let Value::Tuple(t) = pid else { return err(format!("persistent id is not a tuple but {}", pid.describe())) };
    let [Value::Str(tag), class, key, _location, numel, ..] = t.as_slice() else {
        return err(format!("unsupported persistent id (a tuple of {} items)", t.len()));
    };
    if tag != "storage" {
        return err(format!("unsupported persistent id {}", clip(tag)));
    }
    let kind = match class {
        Value::Global(g) if g.0 == "torch" && g.1.ends_with("Storage") => g.1.clone(),
        v => return err(format!("storage type is not a storage class: {}", v.describe())),
    };
    Ok(Value::Storage(Box::new(StorageRef { key: key.as_str()?.to_string(), kind, numel: numel.as_usize()? })))
}

/// The interpreter's state: the stack (with marks kept apart, as Python's metastack), the memo
/// and what has been spent.
struct Machine {
    stack: Vec<Item>,
    /// Stack lengths at each open `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u32, Item>,
    values: u64,
    bytes: u64,
}

impl Machine {
    fn charge(&mut self, values: u64, bytes: u64) -> Result<()> {
        self.values = self.values.saturating_add(values);
        self.bytes = self.bytes.saturating_add(bytes);
        if self.values > MAX_VALUES {
            return limit(format!("pickle builds more than {MAX_VALUES} values (a memo or repetition bomb?)"));
        }
        if self.bytes > MAX_PAYLOAD_BYTES {
            return limit(format!("pickle builds more than {MAX_PAYLOAD_BYTES} bytes of strings"));
        }
        Ok(())
    }
    /// The bottom of the current frame: values below the last mark cannot be popped.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }
    /// Pushes a new value that holds no other values.
    fn push(&mut self, v: Value) -> Result<()> {
        let bytes = v.payload();
        self.charge(1, bytes)?;
        self.stack.push(Item { v, depth: 1, values: 1, bytes });
        Ok(())
    }
    /// Pushes a new container of `items`.
    fn push_container(&mut self, items: Vec<Item>, make: fn(Vec<Value>) -> Value) -> Result<()> {
        self.charge(1, 0)?;
        let mut c = Item { v: Value::None, depth: 1, values: 1, bytes: 0 };
        for i in &items {
            c.adopt(i)?;
        }
        c.v = make(items.into_iter().map(|i| i.v).collect());
        self.stack.push(c);
        Ok(())
    }
    fn pop(&mut self) -> Result<Item> {
        if self.stack.len() <= self.floor() {
            return err("pickle stack underflow");
        }
        self.stack.pop().ok_or_else(|| "pickle stack underflow".into())
    }
    fn top(&mut self, what: &str) -> Result<&mut Item> {
        let above_floor = self.stack.len() > self.floor();
        match self.stack.last_mut() {
            Some(t) if above_floor => Ok(t),
            _ => err(format!("{what} on an empty stack")),
        }
    }
    fn mark(&mut self) -> Result<()> {
        if self.marks.len() >= MAX_DEPTH {
            return limit(format!("pickle nests deeper than {MAX_DEPTH} levels (MARKs)"));
        }
        self.marks.push(self.stack.len());
        Ok(())
    }
    fn pop_mark(&mut self) -> Result<Vec<Item>> {
        let m = self.marks.pop().ok_or("MARK missing")?;
        if m > self.stack.len() {
            return err("MARK missing");
        }
        Ok(self.stack.split_off(m))
    }
    fn pop_n(&mut self, n: usize) -> Result<Vec<Item>> {
        match self.stack.len().checked_sub(n) {
            Some(at) if at >= self.floor() => Ok(self.stack.split_off(at)),
            _ => err("pickle stack underflow"),
        }
    }
    fn memo_put(&mut self, i: u32) -> Result<()> {
        let top = self.top("memo put")?;
        let (values, bytes) = (top.values, top.bytes);
        // Charged before the copy is made, as for `memo_get`.
        self.charge(values, bytes)?;
        let item = self.top("memo put")?.clone();
        self.memo.insert(i, item);
        Ok(())
    }
    fn memo_get(&mut self, i: u32) -> Result<()> {
        let (values, bytes) = match self.memo.get(&i) {
            Some(m) => (m.values, m.bytes),
            None => return err(format!("memo entry {i} read before it is written")),
        };
        // Charged before the copy is made: a copy of a big container costs its size.
        self.charge(values, bytes)?;
        let item = self.memo.get(&i).cloned().ok_or_else(|| format!("memo entry {i} read before it is written"))?;
        self.stack.push(item);
        Ok(())
    }
    fn append(&mut self, items: Vec<Item>, what: &str) -> Result<()> {
        let top = self.top(what)?;
        if !matches!(top.v, Value::List(_)) {
            return err(format!("{what} to {}", top.v.describe()));
        }
        for i in &items {
            top.adopt(i)?;
        }
        if let Value::List(l) = &mut top.v {
            l.extend(items.into_iter().map(|i| i.v));
        }
        Ok(())
    }
    fn set_items(&mut self, items: Vec<Item>, what: &str) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            return err(format!("{what} with an odd number of keys and values"));
        }
        let top = self.top(what)?;
        if !matches!(top.v, Value::Dict(_)) {
            return err(format!("{what} on {}", top.v.describe()));
        }
        for i in &items {
            top.adopt(i)?;
        }
        if let Value::Dict(d) = &mut top.v {
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                d.push((k.v, v.v));
            }
        }
        Ok(())
    }
}

/// Loads one pickle from `bytes`; returns the value and the bytes consumed. Any input gives a
/// value or an error, within the limits above; nothing named in the pickle is executed.
pub fn load(bytes: &[u8]) -> Result<(Value, usize)> {
    let mut r = Reader { b: bytes, pos: 0 };
    let mut m = Machine { stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), values: 0, bytes: 0 };
    loop {
        let at = r.pos;
        let op = r.u8()?;
        match op {
            0x80 => {
                let proto = r.u8()?;
                if proto > 5 {
                    return err(format!("unsupported pickle protocol {proto}"));
                }
            }
            0x95 => {
                r.u64()?; // FRAME: only a hint for buffering
            }
            b'.' => return Ok((m.pop()?.v, r.pos)),
            b'(' => m.mark()?,
            b')' => m.push(Value::Tuple(Vec::new()))?,
            b't' => {
                let items = m.pop_mark()?;
                m.push_container(items, Value::Tuple)?;
            }
            0x85..=0x87 => {
                let items = m.pop_n(usize::from(op - 0x84))?;
                m.push_container(items, Value::Tuple)?;
            }
            b']' => m.push(Value::List(Vec::new()))?,
            b'}' => m.push(Value::Dict(Vec::new()))?,
            b'a' => {
                let v = m.pop()?;
                m.append(vec![v], "APPEND")?;
            }
            b'e' => {
                let items = m.pop_mark()?;
                m.append(items, "APPENDS")?;
            }
            b's' => {
                let v = m.pop()?;
                let k = m.pop()?;
                m.set_items(vec![k, v], "SETITEM")?;
            }
            b'u' => {
                let items = m.pop_mark()?;
                m.set_items(items, "SETITEMS")?;
            }
            b'q' => {
                let i = r.u8()?;
                m.memo_put(u32::from(i))?;
            }
            b'r' => {
                let i = r.u32()?;
                m.memo_put(i)?;
            }
            0x94 => {
                let i = u32::try_from(m.memo.len()).map_err(|_| "memo full")?;
                m.memo_put(i)?;
            }
            b'h' => {
                let i = r.u8()?;
                m.memo_get(u32::from(i))?;
            }
            b'j' => {
                let i = r.u32()?;
                m.memo_get(i)?;
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                m.push(global(&module, &name)?)?;
            }
            0x93 => {
                let name = m.pop()?;
                let module = m.pop()?;
                m.push(global(module.v.as_str()?, name.v.as_str()?)?)?;
            }
            b'R' | 0x81 => {
                // REDUCE: func(*args); NEWOBJ: cls.__new__(cls, *args). Only the allowed globals.
                let args = m.pop()?;
                let func = m.pop()?;
                m.push(reduce(func.v, args.v)?)?;
            }
            b'b' => {
                // BUILD: set state on the object below; state dicts carry `_metadata` this way.
                m.pop()?;
                m.top("BUILD")?;
            }
            b'Q' => {
                let pid = m.pop()?;
                m.push(persistent(pid.v)?)?;
            }
            b'N' => m.push(Value::None)?,
            0x88 => m.push(Value::Bool(true))?,
            0x89 => m.push(Value::Bool(false))?,
            b'J' => m.push(Value::Int(i64::from(i32::from_le_bytes(r.array()?))))?,
            b'K' => m.push(Value::Int(i64::from(r.u8()?)))?,
            b'M' => m.push(Value::Int(i64::from(r.u16()?)))?,
            0x8a => {
                // LONG1: little-endian two's complement.
                let n = usize::from(r.u8()?);
                let b = r.take(n)?;
                if n > 8 {
                    m.push(Value::BigInt(b.to_vec()))?;
                    continue;
                }
                let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xff } else { 0 };
                let mut le = [fill; 8];
                le[..n].copy_from_slice(b);
                m.push(Value::Int(i64::from_le_bytes(le)))?;
            }
            b'G' => m.push(Value::Float(f64::from_be_bytes(r.array()?)))?,
            b'X' => {
                let field = r.u32()?;
                let n = r.len(u64::from(field))?;
                m.push(Value::Str(r.utf8(n)?))?;
            }
            0x8c => {
                let n = usize::from(r.u8()?);
                m.push(Value::Str(r.utf8(n)?))?;
            }
            0x8d => {
                let field = r.u64()?;
                let n = r.len(field)?;
                m.push(Value::Str(r.utf8(n)?))?;
            }
            b'C' => {
                let n = usize::from(r.u8()?);
                m.push(Value::Bytes(r.take(n)?.to_vec()))?;
            }
            b'B' => {
                let field = r.u32()?;
                let n = r.len(u64::from(field))?;
                m.push(Value::Bytes(r.take(n)?.to_vec()))?;
            }
            0x8e => {
                let field = r.u64()?;
                let n = r.len(field)?;
                m.push(Value::Bytes(r.take(n)?.to_vec()))?;
            }
            op => return err(format!("unsupported pickle opcode 0x{op:02x} at byte {at}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_small() {
        assert!(std::mem::size_of::<Value>() <= 32, "{}", std::mem::size_of::<Value>());
    }

    #[test]
    fn long1_sign_extends() {
        for (b, v) in [(&[0x80u8][..], -128i64), (&[0xff, 0x00], 255), (&[], 0), (&[0xff; 8], -1)] {
            let mut p = vec![0x80, 2, 0x8a, b.len() as u8];
            p.extend_from_slice(b);
            p.push(b'.');
            assert_eq!(load(&p).unwrap().0, Value::Int(v), "{b:?}");
        }
    }
}
