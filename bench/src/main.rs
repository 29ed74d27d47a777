//! Not started yet.
fn main() {
    eprintln!("sluice-bench: not implemented yet");
    std::process::exit(2);
}
