//! `kdump-hotplugd plan`: the crash kernel the daemon would reload, and the loader it would use.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::host::sysroot::Sysroot;
use crate::real_host;

pub fn print(sysroot: PathBuf, json: bool) -> ExitCode {
    let root = Sysroot::new(&sysroot);
    let settings = match super::load_settings(&sysroot) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("kdump-hotplugd: {error}");
            return ExitCode::FAILURE;
        }
    };
    let setup = real_host::crash_kernel_setup(&settings, &root);
    let overrides: Vec<(&str, String)> = [
        (
            "loader.kernel",
            settings
                .loader
                .kernel
                .as_ref()
                .map(|p| p.display().to_string()),
        ),
        (
            "loader.initrd",
            settings
                .loader
                .initrd
                .as_ref()
                .map(|p| p.display().to_string()),
        ),
        ("loader.cmdline", settings.loader.cmdline.clone()),
    ]
    .into_iter()
    .filter_map(|(key, value)| value.map(|v| (key, v)))
    .collect();
    if json {
        let value = serde_json::json!({
            "plan": setup.plan,
            "overrides": overrides.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<std::collections::BTreeMap<_, _>>(),
            "loader": setup.decision,
            "overflow_loader": setup.overflow,
            "kernel_plan_error": setup.kernel.as_ref().err().map(ToString::to_string),
            "summary": setup.summary(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("plain values serialize")
        );
    } else {
        print!("{}", setup.plan);
        for (key, value) in &overrides {
            println!("override: {key} = {value:?} (configuration)");
        }
        if let Err(error) = &setup.kernel {
            println!("cannot load the plan: {error}");
        }
        println!(
            "loader:   {} ({})",
            setup.decision.choice.name(),
            setup.decision.reason
        );
        println!(
            "          when the header outgrows the kernel's buffer: {}",
            setup.overflow.name()
        );
    }
    ExitCode::SUCCESS
}
