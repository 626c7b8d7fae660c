//! `apikey verify`: the key comes on standard input, never in argv.

use super::print;
use crate::args::VerifyArgs;
use crate::client;
use crate::exit::CliError;
use crate::text::{safe, FIELD};
use apikey_proto::{KeysError, Token};
use std::io::{IsTerminal, Read};
use std::os::fd::AsFd;
use zeroize::Zeroizing;

/// Far more than a key; the cap keeps a runaway pipe out of memory.
pub const MAX_INPUT: usize = 4096;

pub async fn run(args: VerifyArgs) -> Result<(), CliError> {
    let token = key_from_stdin()?;

    let proxy = client::connect().await?;
    let reply = proxy
        .verify(
            token.as_str(),
            args.user.as_deref().unwrap_or(""),
            args.service.as_deref().unwrap_or(""),
            "",
        )
        .await;
    drop(token);
    match reply {
        Ok((owner, id)) => print(&format!(
            "valid: key {} of {}\n",
            safe(&id, FIELD),
            safe(&owner, FIELD)
        )),
        Err(KeysError::Refused(_)) => Err(CliError::Failed("key refused".into())),
        Err(e) => Err(e.into()),
    }
}

/// The key on standard input, checked here: junk (a password pasted by
/// mistake, say) never leaves the process.
pub(crate) fn key_from_stdin() -> Result<Token, CliError> {
    let input = read_key()?;
    let text = std::str::from_utf8(&input)
        .map_err(|_| CliError::Failed("the key on standard input is not valid UTF-8".into()))?;
    if text.is_empty() {
        return Err(CliError::Failed("no key on standard input".into()));
    }
    Token::parse(text.as_bytes()).map_err(|e| CliError::Failed(e.to_string()))
}

/// Reads the key from standard input. Through a duplicate of the
/// descriptor, because the standard library's buffered stdin would keep a
/// copy of the key that nothing wipes. On a terminal the key is not
/// echoed and the line ends the input.
fn read_key() -> Result<Zeroizing<Vec<u8>>, CliError> {
    let stdin = std::io::stdin();
    let fd = stdin
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| CliError::Failed(format!("cannot read standard input: {e}")))?;
    let mut file = std::fs::File::from(fd);
    if stdin.is_terminal() {
        eprint!("API key: ");
        let _quiet = echo::EchoOff::new();
        read_capped(&mut file, true)
    } else {
        read_capped(&mut file, false)
    }
}

/// At most `MAX_INPUT` bytes, without one trailing "\n" or "\r\n". Reads
/// one byte more than allowed to tell "exactly the limit" from "too long".
pub fn read_capped<R: Read>(r: &mut R, one_line: bool) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let mut buf = Zeroizing::new(vec![0u8; MAX_INPUT + 1]);
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                if one_line && buf[..n].contains(&b'\n') {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(CliError::Failed(format!(
                    "cannot read the key from standard input: {e}"
                )))
            }
        }
    }
    if n > MAX_INPUT {
        return Err(CliError::Failed("token too long".into()));
    }
    // Vec::truncate keeps the capacity, which Zeroizing wipes on drop.
    buf.truncate(n);
    if buf.ends_with(b"\r\n") {
        buf.truncate(n - 2);
    } else if buf.ends_with(b"\n") {
        buf.truncate(n - 1);
    }
    Ok(buf)
}

/// Echo off while a key is typed, and back on however the process ends.
mod echo {
    use std::mem::MaybeUninit;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::OnceLock;

    static SAVED: OnceLock<libc::termios> = OnceLock::new();
    const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];
    /// Which of SIGNALS have our handler (those that had the default).
    static HANDLED: [AtomicBool; 4] = [const { AtomicBool::new(false) }; 4];

    pub struct EchoOff;

    impl EchoOff {
        pub fn new() -> Option<EchoOff> {
            let mut current = MaybeUninit::<libc::termios>::uninit();
            // SAFETY: tcgetattr fills the struct when it returns 0.
            if unsafe { libc::tcgetattr(libc::STDIN_FILENO, current.as_mut_ptr()) } != 0 {
                return None;
            }
            // SAFETY: initialised by the successful tcgetattr above.
            let saved = unsafe { current.assume_init() };
            let _ = SAVED.set(saved);
            let handler = restore_and_reraise as *const () as libc::sighandler_t;
            for (sig, handled) in SIGNALS.iter().zip(&HANDLED) {
                // SAFETY: the handler only calls async-signal-safe functions.
                let before = unsafe { libc::signal(*sig, handler) };
                if before == libc::SIG_DFL {
                    handled.store(true, Ordering::SeqCst);
                } else {
                    // Ignored or handled by whoever started us: leave it so.
                    // SAFETY: puts back the disposition just replaced.
                    unsafe { libc::signal(*sig, before) };
                }
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            // Still echo the newline, so the next output starts a line.
            quiet.c_lflag |= libc::ECHONL;
            // SAFETY: a valid termios for a valid descriptor.
            if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &quiet) } != 0 {
                restore();
                return None;
            }
            Some(EchoOff)
        }
    }

    impl Drop for EchoOff {
        fn drop(&mut self) {
            restore();
        }
    }

    fn restore() {
        if let Some(saved) = SAVED.get() {
            // SAFETY: restoring the attributes read earlier.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved) };
        }
        for (sig, handled) in SIGNALS.iter().zip(&HANDLED) {
            if handled.swap(false, Ordering::SeqCst) {
                // SAFETY: back to the default disposition it had.
                unsafe { libc::signal(*sig, libc::SIG_DFL) };
            }
        }
    }

    extern "C" fn restore_and_reraise(sig: libc::c_int) {
        // SAFETY: tcsetattr, signal and raise are async-signal-safe, and
        // OnceLock::get is an atomic load.
        unsafe {
            if let Some(saved) = SAVED.get() {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved);
            }
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read(input: &[u8]) -> Result<Vec<u8>, String> {
        read_capped(&mut Cursor::new(input.to_vec()), false)
            .map(|b| b.to_vec())
            .map_err(|e| e.message())
    }

    #[test]
    fn strips_one_line_ending() {
        assert_eq!(read(b"abc").unwrap(), b"abc");
        assert_eq!(read(b"abc\n").unwrap(), b"abc");
        assert_eq!(read(b"abc\r\n").unwrap(), b"abc");
        assert_eq!(read(b"abc\n\n").unwrap(), b"abc\n");
        assert_eq!(read(b"").unwrap(), b"");
    }

    #[test]
    fn caps_the_input() {
        assert_eq!(read(&vec![b'a'; MAX_INPUT]).unwrap().len(), MAX_INPUT);
        assert_eq!(
            read(&vec![b'a'; MAX_INPUT + 1]).unwrap_err(),
            "token too long"
        );
        // The newline does not count: it is stripped after the cap.
        let mut just = vec![b'a'; MAX_INPUT - 1];
        just.push(b'\n');
        assert_eq!(read(&just).unwrap().len(), MAX_INPUT - 1);
        assert_eq!(read(&vec![b'a'; 1 << 20]).unwrap_err(), "token too long");
    }

    #[test]
    fn a_line_ends_terminal_input() {
        struct Typed(Vec<&'static [u8]>);
        impl Read for Typed {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                assert!(!self.0.is_empty(), "read past the end of the line");
                let chunk = self.0.remove(0);
                buf[..chunk.len()].copy_from_slice(chunk);
                Ok(chunk.len())
            }
        }
        let mut typed = Typed(vec![b"apikey_", b"abc\n"]);
        assert_eq!(
            read_capped(&mut typed, true).unwrap().as_slice(),
            b"apikey_abc"
        );
    }
}
