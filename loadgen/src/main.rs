//! Not started yet.
fn main() {
    eprintln!("sluice-loadgen: not implemented yet");
    std::process::exit(2);
}
