fn main() -> std::process::ExitCode {
    machi::cli::main()
}
