//! pam_apikey's D-Bus reply decoder: what a bus (or something on its
//! socket) sends back to the module inside sshd, vsftpd or nginx.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = pam_apikey::dbus::decode_message(data);
    });
}
