fn main() {
    std::process::exit(apikey::run());
}
