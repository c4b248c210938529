//! Just enough of Python's pickle (protocol 2-5) to read what `torch.save` writes for a state
//! dict: dicts, tuples, lists, strings, numbers, `collections.OrderedDict`, and tensors rebuilt
//! by `torch._utils._rebuild_tensor_v2` from persistent storage ids. Anything else is an error
//! naming it, never code execution.

use super::{InteropError, Result};
use std::collections::HashMap;

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
    Global(String, String),
    Storage(StorageRef),
    Tensor(TensorRef),
    /// An object we do not build but may pass through (e.g. a backward-hooks `OrderedDict`).
    Object(String),
    Mark,
}

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(InteropError::Format(msg.into()))
}

impl Value {
    fn as_usize(&self) -> Result<usize> {
        match self {
            Value::Int(i) if *i >= 0 => Ok(*i as usize),
            v => err(format!("expected a non-negative integer, got {v:?}")),
        }
    }
    fn as_usizes(&self) -> Result<Vec<usize>> {
        match self {
            Value::Tuple(v) | Value::List(v) => v.iter().map(Value::as_usize).collect(),
            v => err(format!("expected a tuple of integers, got {v:?}")),
        }
    }
    fn as_str(&self) -> Result<&str> {
        match self {
            Value::Str(s) => Ok(s),
            v => err(format!("expected a string, got {v:?}")),
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.pos + n > self.b.len() {
            return err("pickle ends early");
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn line(&mut self) -> Result<String> {
        let start = self.pos;
        while self.u8()? != b'\n' {}
        Ok(String::from_utf8_lossy(&self.b[start..self.pos - 1]).into_owned())
    }
    fn utf8(&mut self, n: usize) -> Result<String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|e| InteropError::Format(e.to_string()))
    }
}

/// Applies a callable from a `GLOBAL` to its arguments (`REDUCE`).
fn reduce(func: Value, args: Value) -> Result<Value> {
    let Value::Global(module, name) = &func else { return err(format!("cannot call {func:?}")) };
    let args = match args {
        Value::Tuple(a) => a,
        a => return err(format!("arguments of {module}.{name} are not a tuple: {a:?}")),
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let storage = match args.first() {
                Some(Value::Storage(s)) => s.clone(),
                a => return err(format!("{name}: expected a storage, got {a:?}")),
            };
            let get = |i: usize| args.get(i).ok_or_else(|| format!("{name}: missing argument {i}"));
            Ok(Value::Tensor(TensorRef {
                storage,
                offset: get(1)?.as_usize()?,
                shape: get(2)?.as_usizes()?,
                stride: get(3)?.as_usizes()?,
            }))
        }
        ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
            args.into_iter().next().ok_or_else(|| "_rebuild_parameter without a tensor".into())
        }
        _ => Ok(Value::Object(format!("{module}.{name}"))),
    }
}

fn persistent(pid: Value) -> Result<Value> {
    let Value::Tuple(t) = pid else { return err(format!("persistent id is not a tuple: {pid:?}")) };
    if t.first().map(Value::as_str).transpose()? != Some("storage") || t.len() < 5 {
        return err(format!("unsupported persistent id {t:?}"));
    }
    let kind = match &t[1] {
        Value::Global(_, n) => n.clone(),
        v => return err(format!("storage type is not a class: {v:?}")),
    };
    Ok(Value::Storage(StorageRef { key: t[2].as_str()?.to_string(), kind, numel: t[4].as_usize()? }))
}

/// Loads one pickle from `bytes`; returns the value and the bytes consumed.
pub fn load(bytes: &[u8]) -> Result<(Value, usize)> {
    let mut r = Reader { b: bytes, pos: 0 };
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    let pop = |s: &mut Vec<Value>| s.pop().ok_or_else(|| "pickle stack underflow".to_string());
    let pop_mark = |s: &mut Vec<Value>| -> Result<Vec<Value>> {
        let m = s.iter().rposition(|v| *v == Value::Mark).ok_or("MARK missing")?;
        let items = s.split_off(m + 1);
        s.pop();
        Ok(items)
    };
    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?; // PROTO
            }
            0x95 => {
                r.u64()?; // FRAME
            }
            b'.' => return Ok((pop(&mut stack)?, r.pos)),
            b'(' => stack.push(Value::Mark),
            b')' => stack.push(Value::Tuple(Vec::new())),
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return err("pickle stack underflow");
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b']' => stack.push(Value::List(Vec::new())),
            b'}' => stack.push(Value::Dict(Vec::new())),
            b'a' => {
                let v = pop(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.push(v),
                    _ => return err("APPEND to a non-list"),
                }
            }
            b'e' => {
                let items = pop_mark(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.extend(items),
                    _ => return err("APPENDS to a non-list"),
                }
            }
            b's' => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::Dict(d)) => d.push((k, v)),
                    _ => return err("SETITEM on a non-dict"),
                }
            }
            b'u' => {
                let items = pop_mark(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::Dict(d)) => {
                        let mut it = items.into_iter();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            d.push((k, v));
                        }
                    }
                    _ => return err("SETITEMS on a non-dict"),
                }
            }
            b'q' => {
                let i = r.u8()? as u32;
                memo.insert(i, stack.last().cloned().ok_or("BINPUT on empty stack")?);
            }
            b'r' => {
                let i = r.u32()?;
                memo.insert(i, stack.last().cloned().ok_or("LONG_BINPUT on empty stack")?);
            }
            0x94 => {
                let i = memo.len() as u32;
                memo.insert(i, stack.last().cloned().ok_or("MEMOIZE on empty stack")?);
            }
            b'h' => {
                let i = r.u8()? as u32;
                stack.push(memo.get(&i).cloned().ok_or(format!("BINGET {i} not in memo"))?);
            }
            b'j' => {
                let i = r.u32()?;
                stack.push(memo.get(&i).cloned().ok_or(format!("LONG_BINGET {i} not in memo"))?);
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                stack.push(Value::Global(module, name));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                stack.push(Value::Global(module.as_str()?.into(), name.as_str()?.into()));
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let func = pop(&mut stack)?;
                stack.push(reduce(func, args)?);
            }
            0x81 => {
                // NEWOBJ: cls.__new__(cls, *args)
                let args = pop(&mut stack)?;
                let cls = pop(&mut stack)?;
                stack.push(reduce(cls, args)?);
            }
            b'b' => {
                // BUILD: set state on the object below; state dicts carry `_metadata` this way.
                pop(&mut stack)?;
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(persistent(pid)?);
            }
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'J' => stack.push(Value::Int(r.u32()? as i32 as i64)),
            b'K' => stack.push(Value::Int(r.u8()? as i64)),
            b'M' => stack.push(Value::Int(r.u16()? as i64)),
            0x8a => {
                let n = r.u8()? as usize;
                let b = r.take(n)?;
                if n > 8 {
                    stack.push(Value::BigInt(b.to_vec()));
                    continue;
                }
                let mut v: i64 = 0;
                for (i, &byte) in b.iter().enumerate() {
                    v |= (byte as i64) << (8 * i);
                }
                if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                stack.push(Value::Int(v));
            }
            b'G' => stack.push(Value::Float(f64::from_be_bytes(r.take(8)?.try_into().expect("8")))),
            b'X' => {
                let n = r.u32()? as usize;
                stack.push(Value::Str(r.utf8(n)?));
            }
            0x8c => {
                let n = r.u8()? as usize;
                stack.push(Value::Str(r.utf8(n)?));
            }
            0x8d => {
                let n = r.u64()? as usize;
                stack.push(Value::Str(r.utf8(n)?));
            }
            b'C' => {
                let n = r.u8()? as usize;
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b'B' => {
                let n = r.u32()? as usize;
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            op => return err(format!("unsupported pickle opcode 0x{op:02x} at byte {}", r.pos - 1)),
        }
    }
}
