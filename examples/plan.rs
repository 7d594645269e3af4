//! Prints the crash-kernel plan of a root directory: `cargo run --example plan -- [SYSROOT] [--json]`.
//! (The `kdump-hotplugd plan` subcommand will do the same.)

use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let root = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or_else(|| PathBuf::from("/"), PathBuf::from);
    let (_, plan) = kdump_hotplugd::host::plan_inputs::read_and_plan(&root);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan).expect("serialisable")
        );
    } else {
        print!("{plan}");
    }
}
