//! The `kdump-hotplugd` command; everything it does lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    kdump_hotplugd::cli::main()
}
