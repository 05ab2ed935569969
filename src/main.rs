//! Thin binary: parse arguments, run the command, map errors to a message and exit code 1.

fn main() {
    fastlmpi::engine::report::tune_heap_for_inference();
    let code = match fastlmpi::cli::main_with_args(std::env::args_os()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {}", render(&e));
            1
        }
    };
    std::process::exit(code);
}

fn render(e: &fastlmpi::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        src = s.source();
    }
    anyhow::Error::msg(msg).to_string()
}
