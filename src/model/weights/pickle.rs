//! The subset of Python's pickle protocol (2–5) that `torch.save(state_dict)` produces:
//! a reader that rebuilds dicts of tensor references without running any code, and a
//! writer for the same structure.

use std::collections::HashMap;

/// Element types of torch storages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    pub fn from_storage(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    /// Reads one element as f32 (integers convert exactly up to 2^24).
    pub fn read_f32(self, b: &[u8]) -> f32 {
        match self {
            Self::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Self::F64 => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
            Self::F16 => f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
            Self::BF16 => f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
            Self::I64 => i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
            Self::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            Self::I16 => i16::from_le_bytes([b[0], b[1]]) as f32,
            Self::I8 => b[0] as i8 as f32,
            Self::U8 | Self::Bool => b[0] as f32,
        }
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: value = f · 2^-24.
            let v = f as f32 * 2f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | (((e - 15 + 127) as u32) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// A reference to (part of) a storage record, as `_rebuild_tensor_v2` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage_key: String,
    pub dtype: DType,
    /// Offset in elements.
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// A value on the unpickler's stack.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    /// A persistent id (torch: a storage description tuple).
    PersId(Box<Value>),
    /// Any other object built by calling a global.
    Object(String, Box<Value>),
    Tensor(TensorRef),
    Mark,
}

impl Value {
    /// The Python type of the value (`dict`, `tuple`, `torch.nn.Module`, ...), for messages.
    pub fn type_name(&self) -> String {
        match self {
            Value::Object(name, _) => name.clone(),
            Value::Global(m, n) => format!("{m}.{n}"),
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::List(_) => "list".into(),
            Value::Dict(_) => "dict".into(),
            Value::PersId(_) => "persistent id".into(),
            Value::Tensor(_) => "tensor".into(),
            Value::Mark => "mark".into(),
        }
    }

    /// A short description that stays short whatever the value holds.
    fn summary(&self) -> String {
        match self {
            Value::Tuple(v) | Value::List(v) => {
                let items: Vec<String> = v.iter().take(6).map(|x| x.type_name()).collect();
                let more = if v.len() > 6 { format!(", … {} more", v.len() - 6) } else { String::new() };
                format!("{}({}{more})", self.type_name(), items.join(", "))
            }
            Value::Int(i) => i.to_string(),
            Value::Str(s) if s.len() <= 64 => format!("{s:?}"),
            other => other.type_name(),
        }
    }
}

/// Why a pickle cannot be read: the offset in the pickle and what was wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickleError {
    /// The data ends inside an opcode.
    #[error("pickle: data ends at offset {len} while {need} more bytes were expected")]
    Truncated { len: usize, need: usize },
    /// An opcode outside the subset `torch.save` writes (or not pickle at all).
    #[error("pickle: unsupported opcode 0x{op:02x} at offset {at}")]
    Opcode { op: u8, at: usize },
    /// The values built exceed [`MAX_BUDGET`].
    #[error(
        "pickle: the objects built by offset {at} exceed {} MiB (a state dict needs far less): a malformed file?",
        MAX_BUDGET >> 20
    )]
    Budget { at: usize },
    /// Containers nested deeper than [`MAX_DEPTH`].
    #[error(
        "pickle: objects nested more than {MAX_DEPTH} levels deep at offset {at} (a state dict nests about 5): a malformed file?"
    )]
    Depth { at: usize },
    /// An opcode that needs more values than the stack holds.
    #[error("pickle: stack underflow at offset {at}")]
    Underflow { at: usize },
    /// A tensor rebuilt from arguments of the wrong kind.
    #[error("pickle: unexpected arguments to {callable}: {args}")]
    Arguments { callable: String, args: String },
    /// A storage type this reader does not convert.
    #[error("pickle: unsupported storage type torch.{name}")]
    Storage { name: String },
    /// Any other structure no pickler writes (an odd dict, a missing mark, …).
    #[error("pickle: {message}")]
    Malformed { message: String },
}

fn malformed(message: String) -> PickleError {
    PickleError::Malformed { message }
}

/// Containers nested deeper than this are refused (a state dict nests about five levels);
/// it also keeps the recursive drop and clone of values far from the stack limit.
pub const MAX_DEPTH: u32 = 100;
/// Budget, in approximate bytes, for all values the unpickler builds, copies (DUP, memo) and
/// strings included: a state dict needs well under a MiB, so a file that asks for more is
/// malformed or hostile and is refused before it can exhaust memory.
pub const MAX_BUDGET: u64 = 64 << 20;
/// What one value counts against the budget, beyond its string or bytes payload.
const NODE: u64 = 128;

/// A value on the unpickler's stack with its nesting depth and its cost against the budget.
#[derive(Clone)]
struct Item {
    v: Value,
    depth: u32,
    cost: u64,
}

/// The unpickler's state: stack, memo and the budget spent so far.
struct Machine {
    stack: Vec<Item>,
    memo: HashMap<u32, Item>,
    used: u64,
    at: usize,
}

impl Machine {
    fn charge(&mut self, cost: u64) -> Result<(), PickleError> {
        self.used = self.used.saturating_add(cost);
        if self.used > MAX_BUDGET {
            return Err(PickleError::Budget { at: self.at });
        }
        Ok(())
    }

    /// Pushes a value without children; `payload` is its string or bytes length.
    fn leaf(&mut self, v: Value, payload: usize) -> Result<(), PickleError> {
        let cost = NODE.saturating_add(payload as u64);
        self.charge(cost)?;
        self.stack.push(Item { v, depth: 0, cost });
        Ok(())
    }

    /// Pushes a value built from children whose [`meta`] is `(depth, cost)`; the children
    /// were moved in, so only the new node is charged.
    fn push_node(&mut self, (depth, cost): (u32, u64), v: Value) -> Result<(), PickleError> {
        self.check_depth(depth)?;
        self.charge(NODE)?;
        self.stack.push(Item { v, depth, cost });
        Ok(())
    }

    fn check_depth(&self, depth: u32) -> Result<(), PickleError> {
        if depth > MAX_DEPTH {
            return Err(PickleError::Depth { at: self.at });
        }
        Ok(())
    }

    /// A copy of `item` (DUP, memo PUT and GET), charged in full before it is made.
    fn copy_of(used: &mut u64, at: usize, item: &Item) -> Result<Item, PickleError> {
        *used = used.saturating_add(item.cost);
        if *used > MAX_BUDGET {
            return Err(PickleError::Budget { at });
        }
        Ok(item.clone())
    }

    fn pop(&mut self) -> Result<Item, PickleError> {
        self.stack.pop().ok_or(PickleError::Underflow { at: self.at })
    }

    fn pop_to_mark(&mut self) -> Result<Vec<Item>, PickleError> {
        let pos = self
            .stack
            .iter()
            .rposition(|i| matches!(i.v, Value::Mark))
            .ok_or_else(|| malformed(format!("MARK not found at offset {}", self.at)))?;
        let items = self.stack.split_off(pos + 1);
        self.stack.pop();
        Ok(items)
    }

    /// Adds `items` to the container on top of the stack (APPEND(S), SETITEM(S)).
    fn extend_top(&mut self, items: Vec<Item>, what: &str) -> Result<(), PickleError> {
        let at = self.at;
        let depth = 1 + items.iter().map(|c| c.depth).max().unwrap_or(0);
        self.check_depth(depth)?;
        let added = items.iter().fold(0u64, |a, c| a.saturating_add(c.cost));
        let top = self.stack.last_mut();
        let top = match top {
            Some(t @ Item { v: Value::List(_), .. }) if what == "APPEND" => t,
            Some(t @ Item { v: Value::Dict(_), .. }) if what == "SETITEM" => t,
            _ => {
                let target = if what == "APPEND" { "a non-list" } else { "a non-dict" };
                return Err(malformed(format!("{what} at offset {at} to {target}")));
            }
        };
        top.depth = top.depth.max(depth);
        top.cost = top.cost.saturating_add(added);
        let values = items.into_iter().map(|i| i.v);
        match &mut top.v {
            Value::List(l) => l.extend(values),
            Value::Dict(d) => d.extend(pairs(values.collect())?),
            _ => unreachable!("checked above"),
        }
        Ok(())
    }
}

/// Depth and cost of a value built from `children`.
fn meta(children: &[&Item]) -> (u32, u64) {
    let depth = 1 + children.iter().map(|c| c.depth).max().unwrap_or(0);
    (depth, children.iter().fold(NODE, |a, c| a.saturating_add(c.cost)))
}

/// Unpickles `data`; the caller wraps errors with the file and record name.
///
/// Nesting depth and the total size of the values built are bounded ([`MAX_DEPTH`],
/// [`MAX_BUDGET`]), so no input can overflow the stack or exhaust memory, and every opcode
/// consumes input, so every input ends.
pub fn load(data: &[u8]) -> Result<Value, PickleError> {
    let mut r = Reader { data, pos: 0 };
    let mut m = Machine { stack: Vec::new(), memo: HashMap::new(), used: 0, at: 0 };
    loop {
        let at = r.pos;
        m.at = at;
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?;
            }
            0x95 => {
                r.take(8)?;
            }
            b'.' => return Ok(m.pop().map_err(|_| malformed("STOP with an empty stack".into()))?.v),
            b'(' => m.leaf(Value::Mark, 0)?,
            b')' => m.leaf(Value::Tuple(vec![]), 0)?,
            b']' => m.leaf(Value::List(vec![]), 0)?,
            b'}' => m.leaf(Value::Dict(vec![]), 0)?,
            b'N' => m.leaf(Value::None, 0)?,
            0x88 => m.leaf(Value::Bool(true), 0)?,
            0x89 => m.leaf(Value::Bool(false), 0)?,
            b'K' => m.leaf(Value::Int(r.u8()? as i64), 0)?,
            b'M' => m.leaf(Value::Int(u16::from_le_bytes(r.array()?) as i64), 0)?,
            b'J' => m.leaf(Value::Int(i32::from_le_bytes(r.array()?) as i64), 0)?,
            0x8a | 0x8b => {
                let n = if op == 0x8a { r.u8()? as usize } else { u32::from_le_bytes(r.array()?) as usize };
                if n > 8 {
                    return Err(malformed(format!("integer of {n} bytes at offset {at} is too large")));
                }
                let bytes = r.take(n)?;
                let mut buf = if bytes.last().is_some_and(|b| b & 0x80 != 0) { [0xffu8; 8] } else { [0u8; 8] };
                buf[..n].copy_from_slice(bytes);
                m.leaf(Value::Int(i64::from_le_bytes(buf)), 0)?;
            }
            b'G' => m.leaf(Value::Float(f64::from_be_bytes(r.array()?)), 0)?,
            b'X' | 0x8c | 0x8d | b'U' | b'T' => {
                let n = match op {
                    0x8c | b'U' => r.u8()? as usize,
                    0x8d => usize::try_from(u64::from_le_bytes(r.array()?)).unwrap_or(usize::MAX),
                    _ => u32::from_le_bytes(r.array()?) as usize,
                };
                let s = String::from_utf8_lossy(r.take(n)?).into_owned();
                m.leaf(Value::Str(s), n)?;
            }
            b'C' | b'B' | 0x8e => {
                let n = match op {
                    b'C' => r.u8()? as usize,
                    b'B' => u32::from_le_bytes(r.array()?) as usize,
                    _ => usize::try_from(u64::from_le_bytes(r.array()?)).unwrap_or(usize::MAX),
                };
                let b = r.take(n)?.to_vec();
                m.leaf(Value::Bytes(b), n)?;
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                let n = module.len() + name.len();
                m.leaf(Value::Global(module, name), n)?;
            }
            0x93 => {
                let name = m.pop()?;
                let module = m.pop()?;
                match (module.v, name.v) {
                    (Value::Str(a), Value::Str(b)) => {
                        let n = a.len() + b.len();
                        m.leaf(Value::Global(a, b), n)?
                    }
                    _ => return Err(malformed(format!("STACK_GLOBAL at offset {at} expects two strings"))),
                }
            }
            b'q' | b'r' | 0x94 => {
                let k = match op {
                    b'q' => r.u8()? as u32,
                    b'r' => u32::from_le_bytes(r.array()?),
                    _ => m.memo.len() as u32,
                };
                let top = m.stack.last().ok_or(PickleError::Underflow { at })?;
                let item = Machine::copy_of(&mut m.used, m.at, top)?;
                m.memo.insert(k, item);
            }
            b'h' | b'j' => {
                let k = if op == b'h' { r.u8()? as u32 } else { u32::from_le_bytes(r.array()?) };
                let entry =
                    m.memo.get(&k).ok_or_else(|| malformed(format!("memo entry {k} read before it was written")))?;
                let item = Machine::copy_of(&mut m.used, at, entry)?;
                m.stack.push(item);
            }
            b't' | b'l' | b'd' => {
                let items = m.pop_to_mark()?;
                let meta = meta(&items.iter().collect::<Vec<_>>());
                let values: Vec<Value> = items.into_iter().map(|i| i.v).collect();
                let v = match op {
                    b't' => Value::Tuple(values),
                    b'l' => Value::List(values),
                    _ => Value::Dict(pairs(values)?),
                };
                m.push_node(meta, v)?;
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if m.stack.len() < n {
                    return Err(malformed(format!("TUPLE{n} at offset {at} with a short stack")));
                }
                let items = m.stack.split_off(m.stack.len() - n);
                let meta = meta(&items.iter().collect::<Vec<_>>());
                m.push_node(meta, Value::Tuple(items.into_iter().map(|i| i.v).collect()))?;
            }
            b'a' => {
                let v = m.pop()?;
                m.extend_top(vec![v], "APPEND")?;
            }
            b'e' => {
                let items = m.pop_to_mark()?;
                m.extend_top(items, "APPEND")?;
            }
            b's' | b'u' => {
                let items = if op == b's' {
                    let v = m.pop()?;
                    let k = m.pop()?;
                    vec![k, v]
                } else {
                    m.pop_to_mark()?
                };
                m.extend_top(items, "SETITEM")?;
            }
            b'Q' => {
                let pid = m.pop()?;
                let meta = meta(&[&pid]);
                m.push_node(meta, Value::PersId(Box::new(pid.v)))?;
            }
            b'R' | 0x81 => {
                let args = m.pop()?;
                let callable = m.pop()?;
                let meta = meta(&[&callable, &args]);
                m.check_depth(meta.0)?;
                m.push_node(meta, reduce(callable.v, args.v)?)?;
            }
            b'b' => {
                // Object state (OrderedDict._metadata, parameter attributes): not needed.
                m.pop()?;
            }
            b'0' => {
                m.pop()?;
            }
            b'1' => {
                m.pop_to_mark()?;
            }
            b'2' => {
                let top = m.stack.last().ok_or(PickleError::Underflow { at })?;
                let item = Machine::copy_of(&mut m.used, at, top)?;
                m.stack.push(item);
            }
            other => return Err(PickleError::Opcode { op: other, at }),
        }
    }
}

/// Applies a callable to its arguments for the globals torch state dicts use.
fn reduce(callable: Value, args: Value) -> Result<Value, PickleError> {
    let Value::Global(module, name) = &callable else {
        return Ok(Value::Object(callable.type_name(), Box::new(args)));
    };
    let args_vec: &[Value] = match &args {
        Value::Tuple(v) => v,
        _ => &[],
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") | ("builtins", "dict") => Ok(Value::Dict(vec![])),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let bad = || PickleError::Arguments { callable: format!("{module}.{name}"), args: args.summary() };
            let Some(Value::PersId(pid)) = args_vec.first() else { return Err(bad()) };
            let Value::Tuple(p) = pid.as_ref() else { return Err(bad()) };
            // ('storage', storage_type, key, location, numel)
            let (Some(Value::Global(_, st)), Some(Value::Str(key))) = (p.get(1), p.get(2)) else { return Err(bad()) };
            let dtype = DType::from_storage(st).ok_or_else(|| PickleError::Storage { name: st.clone() })?;
            let int = |v: Option<&Value>| match v {
                Some(Value::Int(i)) if *i >= 0 => usize::try_from(*i).map_err(|_| bad()),
                _ => Err(bad()),
            };
            let ints = |v: Option<&Value>| match v {
                Some(Value::Tuple(t)) if t.len() <= 16 => t.iter().map(|x| int(Some(x))).collect::<Result<Vec<_>, _>>(),
                _ => Err(bad()),
            };
            Ok(Value::Tensor(TensorRef {
                storage_key: key.clone(),
                dtype,
                offset: int(args_vec.get(1))?,
                shape: ints(args_vec.get(2))?,
                stride: ints(args_vec.get(3))?,
            }))
        }
        ("torch._utils", "_rebuild_parameter") => match args_vec.first() {
            Some(t @ Value::Tensor(_)) => Ok(t.clone()),
            _ => Err(malformed("_rebuild_parameter without a tensor".into())),
        },
        _ => Ok(Value::Object(format!("{module}.{name}"), Box::new(args))),
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, PickleError> {
    if !items.len().is_multiple_of(2) {
        return Err(malformed("odd number of items for a dict".into()));
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(PickleError::Truncated { len: self.data.len(), need: n });
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| malformed("unterminated GLOBAL name".into()))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
}

/// A tensor entry for [`Writer::state_dict`].
pub struct TensorEntry<'a> {
    pub key: &'a str,
    pub storage: &'static str,
    pub storage_key: String,
    pub shape: &'a [usize],
}

/// Writes protocol-2 pickles of the shape `torch.save(state_dict)` produces.
pub struct Writer {
    out: Vec<u8>,
}

impl Writer {
    /// The pickle of an OrderedDict of tensors whose storages live in `data/<storage_key>`.
    pub fn state_dict(entries: &[TensorEntry]) -> Vec<u8> {
        let mut w = Writer { out: vec![0x80, 2] };
        w.global("collections", "OrderedDict");
        w.out.extend_from_slice(b")R(");
        for e in entries {
            w.str(e.key);
            w.global("torch._utils", "_rebuild_tensor_v2");
            w.out.extend_from_slice(b"((");
            w.str("storage");
            w.global("torch", e.storage);
            w.str(&e.storage_key);
            w.str("cpu");
            w.int(e.shape.iter().product::<usize>());
            w.out.extend_from_slice(b"tQ");
            w.int(0);
            w.ints(e.shape);
            let mut stride = vec![1usize; e.shape.len()];
            for i in (0..e.shape.len().saturating_sub(1)).rev() {
                stride[i] = stride[i + 1] * e.shape[i + 1];
            }
            w.ints(&stride);
            w.out.push(0x89);
            w.global("collections", "OrderedDict");
            w.out.extend_from_slice(b")Rt");
            w.out.push(b'R');
        }
        w.out.extend_from_slice(b"u.");
        w.out
    }

    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out.extend_from_slice(module.as_bytes());
        self.out.push(b'\n');
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'\n');
    }

    fn str(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: usize) {
        if v <= i32::MAX as usize {
            self.out.push(b'J');
            self.out.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            self.out.extend_from_slice(&[0x8a, 8]);
            self.out.extend_from_slice(&(v as i64).to_le_bytes());
        }
    }

    fn ints(&mut self, v: &[usize]) {
        self.out.push(b'(');
        for &x in v {
            self.int(x);
        }
        self.out.push(b't');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_convert_exactly() {
        // 0x3c00 = 1.0, 0xc000 = -2.0, 0x3555 ≈ 0.33325195 (1 + 341/1024) / 4, 0x0001 = 2^-24.
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), (1.0 + 341.0 / 1024.0) / 4.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
    }

    #[test]
    fn writer_output_reads_back() {
        let shape = [2usize, 3];
        let p = Writer::state_dict(&[TensorEntry {
            key: "a.weight",
            storage: "FloatStorage",
            storage_key: "0".into(),
            shape: &shape,
        }]);
        let v = load(&p).unwrap();
        let Value::Dict(items) = v else { panic!("not a dict") };
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].0, Value::Str("a.weight".into()));
        assert_eq!(
            items[0].1,
            Value::Tensor(TensorRef {
                storage_key: "0".into(),
                dtype: DType::F32,
                offset: 0,
                shape: vec![2, 3],
                stride: vec![3, 1]
            })
        );
    }

    #[test]
    fn truncated_pickle_is_an_error_not_a_panic() {
        let shape = [4usize];
        let p = Writer::state_dict(&[TensorEntry {
            key: "k",
            storage: "FloatStorage",
            storage_key: "0".into(),
            shape: &shape,
        }]);
        for cut in 0..p.len() {
            assert!(load(&p[..cut]).is_err(), "cut at {cut} should fail");
        }
    }
}
