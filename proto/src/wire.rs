//! The D-Bus wire format for the few messages of the login path: method
//! calls whose arguments are strings, and replies carrying strings or a
//! uint32. `pam_apikey` speaks it to the bus and to apikeyd's own socket;
//! apikeyd decodes it on that socket. One small codec for both ends, with
//! no allocation past a message's own (capped) size, so a peer cannot make
//! either side hold more than `MAX_MESSAGE` bytes for a message.

use zeroize::Zeroizing;

/// Largest message accepted in either direction; ours are a few hundred
/// bytes.
pub const MAX_MESSAGE: usize = 64 * 1024;

pub const MSG_METHOD_CALL: u8 = 1;
pub const MSG_METHOD_RETURN: u8 = 2;
pub const MSG_ERROR: u8 = 3;
pub const MSG_SIGNAL: u8 = 4;

const FIELD_PATH: u8 = 1;
const FIELD_INTERFACE: u8 = 2;
const FIELD_MEMBER: u8 = 3;
const FIELD_ERROR_NAME: u8 = 4;
const FIELD_REPLY_SERIAL: u8 = 5;
const FIELD_DESTINATION: u8 = 6;
const FIELD_SIGNATURE: u8 = 8;

/// Header flag: the sender wants no reply.
const NO_REPLY_EXPECTED: u8 = 1;

/// What went wrong decoding a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value in a message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    U32(u32),
}

/// A method call with string arguments, as the module sends it.
pub struct Call<'a> {
    /// `None` on a peer-to-peer connection, where there is no bus to
    /// route by name.
    pub destination: Option<&'a str>,
    pub path: &'a str,
    pub interface: &'a str,
    pub member: &'a str,
    pub args: &'a [&'a str],
}

/// What the fixed first 16 bytes of a message say.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    big: bool,
    kind: u8,
    flags: u8,
    serial: u32,
    fields_len: usize,
    /// The header, padded to 8, before the body.
    header_len: usize,
    /// The whole message's length: read this many bytes, then decode.
    pub total: usize,
}

impl Frame {
    /// Reads the fixed header (at least 16 bytes) and refuses a message
    /// longer than `MAX_MESSAGE` before anything is allocated for it.
    pub fn of(fixed: &[u8]) -> Result<Frame, WireError> {
        if fixed.len() < 16 {
            return Err(short());
        }
        let big = match fixed[0] {
            b'l' => false,
            b'B' => true,
            _ => return Err(WireError("bad endianness mark".into())),
        };
        let u32_at = |i: usize| {
            let b = [fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]];
            if big {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let body_len = u32_at(4) as usize;
        let fields_len = u32_at(12) as usize;
        // Checked one by one first, so the sums below cannot wrap where
        // usize is 32 bits.
        if body_len > MAX_MESSAGE || fields_len > MAX_MESSAGE {
            return Err(WireError("message too large".into()));
        }
        let header_len = pad8(16 + fields_len);
        if header_len + body_len > MAX_MESSAGE {
            return Err(WireError("message too large".into()));
        }
        Ok(Frame {
            big,
            kind: fixed[1],
            flags: fixed[2],
            serial: u32_at(8),
            fields_len,
            header_len,
            total: header_len + body_len,
        })
    }
}

/// A decoded message: its type, the header fields we use, and its body
/// values (calls, returns and errors only; signals are not decoded).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: u8,
    pub serial: u32,
    pub no_reply: bool,
    pub reply_serial: Option<u32>,
    pub error_name: Option<String>,
    pub path: Option<String>,
    pub interface: Option<String>,
    pub member: Option<String>,
    pub signature: String,
    pub body: Vec<Value>,
}

/// Decodes one whole message. For the fuzzer, which feeds it arbitrary
/// bytes: any input gets an answer or an error, never a panic or an
/// allocation past the message's own size.
pub fn decode(msg: &[u8]) -> Result<Message, WireError> {
    let frame = Frame::of(msg)?;
    if msg.len() < frame.total {
        return Err(short());
    }
    decode_framed(&msg[..frame.total], &frame)
}

/// Decodes a message whose frame has been read.
pub fn decode_framed(msg: &[u8], frame: &Frame) -> Result<Message, WireError> {
    let Frame {
        big,
        kind,
        fields_len,
        header_len,
        ..
    } = *frame;
    if header_len > msg.len() || 16 + fields_len > msg.len() {
        return Err(short());
    }
    let mut r = Reader {
        buf: msg,
        pos: 16,
        big,
    };
    let fields_end = 16 + fields_len;
    let mut out = Message {
        kind,
        serial: frame.serial,
        no_reply: frame.flags & NO_REPLY_EXPECTED != 0,
        ..Message::default()
    };
    while r.pos < fields_end {
        r.align(8)?;
        if r.pos >= fields_end {
            break;
        }
        let code = r.byte()?;
        let sig = r.signature()?;
        match (code, r.value(&sig)?) {
            (FIELD_REPLY_SERIAL, Value::U32(s)) => out.reply_serial = Some(s),
            (FIELD_ERROR_NAME, Value::Str(s)) => out.error_name = Some(s),
            (FIELD_SIGNATURE, Value::Str(s)) => out.signature = s,
            (FIELD_PATH, Value::Str(s)) => out.path = Some(s),
            (FIELD_INTERFACE, Value::Str(s)) => out.interface = Some(s),
            (FIELD_MEMBER, Value::Str(s)) => out.member = Some(s),
            _ => {}
        }
    }
    let mut body = Reader {
        buf: &msg[header_len..],
        pos: 0,
        big,
    };
    // Signals may carry any types; they are skipped, not decoded.
    if kind != MSG_SIGNAL {
        for c in out.signature.chars() {
            let v = body.value(c.encode_utf8(&mut [0; 4]))?;
            out.body.push(v);
        }
    }
    Ok(out)
}

/// Encodes a method call. Sized exactly before the arguments are copied
/// in, and the temporary body wiped, so no freed buffer keeps a copy of a
/// token among the arguments.
pub fn encode_call(call: &Call<'_>, serial: u32) -> Vec<u8> {
    let mut h = header(MSG_METHOD_CALL, 0, serial);
    let fields_start = h.buf.len();
    h.field_str(FIELD_PATH, "o", call.path);
    if let Some(destination) = call.destination {
        h.field_str(FIELD_DESTINATION, "s", destination);
    }
    h.field_str(FIELD_INTERFACE, "s", call.interface);
    h.field_str(FIELD_MEMBER, "s", call.member);
    finish(h, fields_start, call.args)
}

/// Encodes a method return carrying string values.
pub fn encode_return(reply_serial: u32, serial: u32, args: &[&str]) -> Vec<u8> {
    let mut h = header(MSG_METHOD_RETURN, 1, serial);
    let fields_start = h.buf.len();
    h.field_u32(FIELD_REPLY_SERIAL, reply_serial);
    finish(h, fields_start, args)
}

/// Encodes a method return carrying strings and uint32s, in order.
pub fn encode_return_values(reply_serial: u32, serial: u32, values: &[Value]) -> Vec<u8> {
    let mut h = header(MSG_METHOD_RETURN, 1, serial);
    let fields_start = h.buf.len();
    h.field_u32(FIELD_REPLY_SERIAL, reply_serial);
    let mut body = Writer { buf: Vec::new() };
    let mut signature = String::with_capacity(values.len());
    for v in values {
        match v {
            Value::Str(s) => {
                body.string(s);
                signature.push('s');
            }
            Value::U32(n) => {
                body.u32(*n);
                signature.push('u');
            }
        }
    }
    seal(h, fields_start, Zeroizing::new(body.buf), &signature)
}

/// Encodes an error reply: its name and a message.
pub fn encode_error(reply_serial: u32, serial: u32, name: &str, message: &str) -> Vec<u8> {
    let mut h = header(MSG_ERROR, 1, serial);
    let fields_start = h.buf.len();
    h.field_u32(FIELD_REPLY_SERIAL, reply_serial);
    h.field_str(FIELD_ERROR_NAME, "s", name);
    finish(h, fields_start, &[message])
}

fn header(kind: u8, flags: u8, serial: u32) -> Writer {
    let mut h = Writer {
        buf: vec![b'l', kind, flags, 1],
    };
    h.u32(0); // body length, patched in `finish`
    h.u32(serial);
    h.u32(0); // fields length, patched in `finish`
    h
}

fn finish(h: Writer, fields_start: usize, args: &[&str]) -> Vec<u8> {
    // Exactly the size it needs: a buffer that grew would leave a freed,
    // unwiped copy of a token behind.
    let mut body = Writer {
        buf: Vec::with_capacity(body_len(args)),
    };
    for a in args {
        body.string(a);
    }
    debug_assert_eq!(body.buf.len(), body.buf.capacity());
    seal(
        h,
        fields_start,
        Zeroizing::new(body.buf),
        &"s".repeat(args.len()),
    )
}

/// The header's signature and lengths, then the body: the message.
fn seal(mut h: Writer, fields_start: usize, body: Zeroizing<Vec<u8>>, signature: &str) -> Vec<u8> {
    if !signature.is_empty() {
        h.field_str(FIELD_SIGNATURE, "g", signature);
    }
    let fields_len = (h.buf.len() - fields_start) as u32;
    h.buf[12..16].copy_from_slice(&fields_len.to_le_bytes());
    h.buf[4..8].copy_from_slice(&(body.len() as u32).to_le_bytes());
    h.align(8);
    // Room made before the body is copied in, so the header's buffer does
    // not move with a token inside; the temporary copy is wiped.
    h.buf.reserve_exact(body.len());
    h.buf.extend_from_slice(&body);
    h.buf
}

/// The body's exact size: each string is a 4-aligned length, the bytes
/// and a NUL.
pub fn body_len(args: &[&str]) -> usize {
    args.iter()
        .fold(0, |pos, a| pos.div_ceil(4) * 4 + 4 + a.len() + 1)
}

fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Little-endian writer with D-Bus alignment.
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn align(&mut self, n: usize) {
        while !self.buf.len().is_multiple_of(n) {
            self.buf.push(0);
        }
    }
    fn u32(&mut self, v: u32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn string(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    fn signature(&mut self, s: &str) {
        self.buf.push(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    fn field_str(&mut self, code: u8, sig: &str, value: &str) {
        self.align(8);
        self.buf.push(code);
        self.signature(sig);
        if sig == "g" {
            self.signature(value);
        } else {
            self.string(value);
        }
    }
    fn field_u32(&mut self, code: u8, value: u32) {
        self.align(8);
        self.buf.push(code);
        self.signature("u");
        self.u32(value);
    }
}

/// Reader over a whole message with alignment relative to its start.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    big: bool,
}

impl Reader<'_> {
    fn align(&mut self, n: usize) -> Result<(), WireError> {
        self.pos = self.pos.div_ceil(n) * n;
        if self.pos > self.buf.len() {
            return Err(short());
        }
        Ok(())
    }
    fn byte(&mut self) -> Result<u8, WireError> {
        let b = *self.buf.get(self.pos).ok_or_else(short)?;
        self.pos += 1;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        self.align(4)?;
        let b: [u8; 4] = self
            .buf
            .get(self.pos..self.pos + 4)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())?;
        self.pos += 4;
        Ok(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
    fn bytes_nul(&mut self, len: usize) -> Result<String, WireError> {
        let end = self.pos.checked_add(len).ok_or_else(short)?;
        let raw = self.buf.get(self.pos..end).ok_or_else(short)?;
        if self.buf.get(end) != Some(&0) {
            return Err(WireError("string not terminated".into()));
        }
        self.pos = end + 1;
        String::from_utf8(raw.to_vec()).map_err(|_| WireError("invalid UTF-8".into()))
    }
    fn string(&mut self) -> Result<String, WireError> {
        let len = self.u32()? as usize;
        self.bytes_nul(len)
    }
    fn signature(&mut self) -> Result<String, WireError> {
        let len = self.byte()? as usize;
        self.bytes_nul(len)
    }
    /// Reads a value of the basic types the login path uses.
    fn value(&mut self, sig: &str) -> Result<Value, WireError> {
        Ok(match sig {
            "s" | "o" => Value::Str(self.string()?),
            "g" => Value::Str(self.signature()?),
            "u" => Value::U32(self.u32()?),
            other => return Err(WireError(format!("unsupported type {other}"))),
        })
    }
}

fn short() -> WireError {
    WireError("message truncated".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call<'a>(args: &'a [&'a str], destination: Option<&'a str>) -> Call<'a> {
        Call {
            destination,
            path: "/org/apikey/Keys1",
            interface: "org.apikey.Keys1",
            member: "Verify",
            args,
        }
    }

    #[test]
    fn a_call_round_trips() {
        let args = ["apikey|x", "alice", "sshd", ""];
        for destination in [Some(":1.5"), None] {
            let msg = encode_call(&call(&args, destination), 7);
            assert_eq!(&msg[..4], &[b'l', MSG_METHOD_CALL, 0, 1]);
            let m = decode(&msg).unwrap();
            assert_eq!(m.kind, MSG_METHOD_CALL);
            assert_eq!(m.serial, 7);
            assert!(!m.no_reply);
            assert_eq!(m.member.as_deref(), Some("Verify"));
            assert_eq!(m.interface.as_deref(), Some("org.apikey.Keys1"));
            assert_eq!(m.path.as_deref(), Some("/org/apikey/Keys1"));
            assert_eq!(m.signature, "ssss");
            let strs: Vec<Value> = args.iter().map(|a| Value::Str(a.to_string())).collect();
            assert_eq!(m.body, strs);
            assert_eq!(Frame::of(&msg).unwrap().total, msg.len());
        }
    }

    #[test]
    fn returns_and_errors_round_trip() {
        let r = decode(&encode_return(9, 3, &["alice", "k1"])).unwrap();
        assert_eq!(
            (r.kind, r.reply_serial, r.serial),
            (MSG_METHOD_RETURN, Some(9), 3)
        );
        assert_eq!(
            r.body,
            vec![Value::Str("alice".into()), Value::Str("k1".into())]
        );
        let empty = decode(&encode_return(2, 4, &[])).unwrap();
        assert!(empty.body.is_empty() && empty.signature.is_empty());
        let e = decode(&encode_error(9, 5, "org.apikey.Keys1.Error.Refused", "no")).unwrap();
        assert_eq!(e.kind, MSG_ERROR);
        assert_eq!(
            e.error_name.as_deref(),
            Some("org.apikey.Keys1.Error.Refused")
        );
        assert_eq!(e.body, vec![Value::Str("no".into())]);
    }

    #[test]
    fn returns_with_numbers_round_trip_aligned() {
        // A string of odd length first, so the uint32 needs padding.
        let values = [
            Value::Str("abc".into()),
            Value::U32(259_200),
            Value::Str(String::new()),
            Value::U32(0),
        ];
        let r = decode(&encode_return_values(4, 6, &values)).unwrap();
        assert_eq!((r.kind, r.reply_serial), (MSG_METHOD_RETURN, Some(4)));
        assert_eq!(r.signature, "susu");
        assert_eq!(r.body, values);
        let strings = [Value::Str("alice".into()), Value::Str("k1".into())];
        assert_eq!(
            encode_return_values(9, 3, &strings),
            encode_return(9, 3, &["alice", "k1"])
        );
        assert_eq!(encode_return_values(2, 4, &[]), encode_return(2, 4, &[]));
    }

    #[test]
    fn big_endian_messages_decode() {
        // A method return, big-endian, body (s) "ok", reply serial 5.
        let mut m = vec![b'B', MSG_METHOD_RETURN, 1, 1];
        m.extend_from_slice(&7u32.to_be_bytes()); // body: len 2 + "ok" + NUL
        m.extend_from_slice(&1u32.to_be_bytes());
        let fields: Vec<u8> = [
            &[FIELD_REPLY_SERIAL, 1, b'u', 0][..],
            &5u32.to_be_bytes(),
            &[FIELD_SIGNATURE, 1, b'g', 0, 1, b's', 0],
        ]
        .concat();
        m.extend_from_slice(&(fields.len() as u32).to_be_bytes());
        m.extend_from_slice(&fields);
        while m.len() % 8 != 0 {
            m.push(0);
        }
        m.extend_from_slice(&2u32.to_be_bytes());
        m.extend_from_slice(b"ok\0");
        let r = decode(&m).unwrap();
        assert_eq!(r.reply_serial, Some(5));
        assert_eq!(r.body, vec![Value::Str("ok".into())]);
    }

    #[test]
    fn sizes_are_refused_before_anything_is_allocated() {
        let mut m = encode_return(1, 1, &["x"]);
        m[4..8].copy_from_slice(&(MAX_MESSAGE as u32 + 1).to_le_bytes());
        assert_eq!(Frame::of(&m).unwrap_err().0, "message too large");
        m[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Frame::of(&m).is_err());
        let mut m = encode_return(1, 1, &["x"]);
        m[12..16].copy_from_slice(&(MAX_MESSAGE as u32).to_le_bytes());
        assert!(Frame::of(&m).is_err(), "header and body together");
        assert!(Frame::of(&m[..15]).is_err());
        assert!(decode(&encode_return(1, 1, &["x"])[..20]).is_err());
    }

    /// A message of exactly MAX_MESSAGE bytes is read; one byte more is
    /// refused from its first 16 bytes.
    #[test]
    fn the_size_limit_is_exact() {
        let header = encode_return(1, 1, &[""]).len() - body_len(&[""]);
        let fits = "x".repeat(MAX_MESSAGE - header - body_len(&[""]));
        let m = encode_return(1, 1, &[&fits]);
        assert_eq!(m.len(), MAX_MESSAGE);
        assert_eq!(Frame::of(&m).unwrap().total, MAX_MESSAGE);
        assert_eq!(decode(&m).unwrap().body, vec![Value::Str(fits.clone())]);
        let over = encode_return(1, 1, &[&format!("{fits}x")]);
        assert_eq!(
            Frame::of(&over).unwrap_err().to_string(),
            "message too large"
        );
    }

    /// A caller that wants no reply says so in the header's flags; the
    /// daemon's socket then sends none.
    #[test]
    fn the_no_reply_flag_is_read() {
        let mut m = encode_call(&call(&["a"], None), 3);
        assert!(!decode(&m).unwrap().no_reply);
        m[2] |= NO_REPLY_EXPECTED;
        assert!(decode(&m).unwrap().no_reply);
    }

    /// A header whose field array ends in padding, at the very end of a
    /// message without a body, decodes (alignment may reach the end).
    #[test]
    fn padding_up_to_the_end_of_the_message_is_read() {
        let mut m = vec![b'l', MSG_METHOD_RETURN, 1, 1];
        m.extend_from_slice(&0u32.to_le_bytes()); // no body
        m.extend_from_slice(&9u32.to_le_bytes());
        m.extend_from_slice(&16u32.to_le_bytes()); // 14 bytes of fields, 2 of padding
        m.extend_from_slice(&[FIELD_REPLY_SERIAL, 1, b'u', 0]);
        m.extend_from_slice(&5u32.to_le_bytes());
        m.extend_from_slice(&[FIELD_SIGNATURE, 1, b'g', 0, 0, 0, 0, 0]);
        assert_eq!(m.len(), 32);
        let r = decode(&m).unwrap();
        assert_eq!((r.serial, r.reply_serial), (9, Some(5)));
        assert!(r.body.is_empty());
    }

    /// decode_framed trusts its frame only as far as the bytes go.
    #[test]
    fn a_frame_longer_than_its_bytes_is_short() {
        let m = encode_return(1, 1, &["x"]);
        let frame = Frame::of(&m).unwrap();
        for len in [16, frame.header_len - 1] {
            assert_eq!(
                decode_framed(&m[..len], &frame).unwrap_err().to_string(),
                short().to_string()
            );
        }
    }

    #[test]
    fn the_body_size_is_known_before_it_is_written() {
        for args in [&[][..], &["a"][..], &["abc", "", "defgh"][..]] {
            let mut w = Writer { buf: Vec::new() };
            for a in args {
                w.string(a);
            }
            assert_eq!(body_len(args), w.buf.len(), "{args:?}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..96 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = decode(&junk);
            let mut framed = encode_call(&call(&["a", "b"], None), 1);
            framed.truncate(len.min(framed.len()));
            framed.extend_from_slice(&junk);
            let _ = decode(&framed);
        }
    }
}
