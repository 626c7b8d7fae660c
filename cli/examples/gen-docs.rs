//! Writes the man pages and shell completions of `apikey` from the same
//! clap definitions the program parses with:
//!
//!     cargo run -p apikey --example gen-docs -- OUTDIR
//!
//! OUTDIR/man/apikey.1, OUTDIR/man/apikey-<subcommand>.1, OUTDIR/man/apikeyd.8 and
//! OUTDIR/completions/{apikey.bash,_apikey,apikey.fish}.

use clap_complete::Shell;
use std::io::Write;
use std::path::{Path, PathBuf};

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: gen-docs OUTDIR");
        std::process::exit(2);
    };
    if let Err(e) = generate(Path::new(&out)) {
        eprintln!("gen-docs: {e}");
        std::process::exit(1);
    }
}

fn generate(out: &Path) -> std::io::Result<()> {
    let man_dir = out.join("man");
    let completion_dir = out.join("completions");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&completion_dir)?;

    let mut cmd = apikey::command();
    // Sets the subcommands' display names ("apikey-generate"), which name
    // their pages.
    cmd.build();
    for sub in cmd.get_subcommands() {
        write_man(sub.clone(), &man_dir)?;
    }
    write_man(cmd.clone(), &man_dir)?;
    write_daemon_man(&man_dir)?;

    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut cmd, "apikey", &completion_dir)?;
        println!("{}", path.display());
    }
    Ok(())
}

/// apikeyd(8), from the daemon's own argument definitions.
fn write_daemon_man(dir: &Path) -> std::io::Result<PathBuf> {
    let cmd = <apikeyd::args::Args as clap::CommandFactory>::command();
    let man = clap_mangen::Man::new(cmd)
        .section("8")
        .source(format!("apikey {}", env!("CARGO_PKG_VERSION")))
        .manual("apikey");
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)?;
    std::fs::write(&path, page)?;
    println!("{}", path.display());
    Ok(path)
}

/// One page. The text after the options (exit status, examples) begins
/// with a heading line such as "Examples:", which becomes the section.
fn write_man(cmd: clap::Command, dir: &Path) -> std::io::Result<PathBuf> {
    let after = cmd.get_after_long_help().map(|s| s.to_string());
    let version = cmd.get_version().unwrap_or(env!("CARGO_PKG_VERSION"));
    let man = clap_mangen::Man::new(
        cmd.clone()
            .after_long_help(None::<&str>)
            .after_help(None::<&str>),
    )
    .source(format!("apikey {version}"))
    .manual("apikey");
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    render_synopsis(&mut page, &cmd)?;
    man.render_description_section(&mut page)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut page)?;
    }
    if let Some(text) = after {
        render_extra(&mut page, &text)?;
    }
    let mut file = std::fs::File::create(&path)?;
    file.write_all(&page)?;
    println!("{}", path.display());
    Ok(path)
}

/// The synopsis as the usage line shows it: the contract's synopsis,
/// not one rebuilt from the options.
fn render_synopsis(page: &mut Vec<u8>, cmd: &clap::Command) -> std::io::Result<()> {
    let usage = cmd.clone().render_usage().to_string();
    let usage = usage.strip_prefix("Usage: ").unwrap_or(&usage);
    writeln!(page, ".SH SYNOPSIS\n.nf")?;
    for line in usage.lines() {
        // Continuation lines are indented for "Usage: " in --help.
        let line = line.strip_prefix("       ").unwrap_or(line);
        writeln!(page, "{}", roff_line(line))?;
    }
    writeln!(page, ".fi")
}

/// Renders "Heading:" and the lines after it as a section: "  TERM  text"
/// lines as a tagged list (exit statuses), other indented lines as
/// unfilled text (commands), the rest as paragraphs.
fn render_extra(page: &mut Vec<u8>, text: &str) -> std::io::Result<()> {
    let mut lines = text.lines();
    let heading = lines
        .next()
        .unwrap_or_default()
        .trim_end_matches(':')
        .to_uppercase();
    writeln!(page, ".SH \"{}\"", roff_escape(&heading))?;
    let mut in_block = false;
    fn close(page: &mut Vec<u8>, in_block: &mut bool) -> std::io::Result<()> {
        if *in_block {
            writeln!(page, ".fi\n.RE")?;
            *in_block = false;
        }
        Ok(())
    }
    for line in lines {
        let tagged = line
            .strip_prefix("  ")
            .filter(|l| !l.starts_with(' '))
            .and_then(|l| l.split_once("  "))
            .map(|(term, rest)| (term, rest.trim_start()));
        if line.trim().is_empty() {
            close(page, &mut in_block)?;
        } else if let Some((term, rest)) = tagged {
            close(page, &mut in_block)?;
            writeln!(page, ".TP\n.B {}\n{}", roff_escape(term), roff_line(rest))?;
        } else if let Some(indented) = line.strip_prefix("  ") {
            if !in_block {
                writeln!(page, ".PP\n.RS 4\n.nf")?;
                in_block = true;
            }
            writeln!(page, "{}", roff_line(indented))?;
        } else {
            close(page, &mut in_block)?;
            writeln!(page, ".PP\n{}", roff_line(line))?;
        }
    }
    close(page, &mut in_block)
}

fn roff_escape(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

/// A text line in roff: escapes, and a zero-width guard before a leading
/// '.' or '\'' that would otherwise start a request.
fn roff_line(line: &str) -> String {
    let escaped = roff_escape(line);
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}
