// Prints the summary of a built-in scenario as JSON (the CLI is
// `ctdoctor simulate`; this is for the README and quick checks).
// Run: cargo run --release -p ctsim --example summary -- NAME|FILE.toml [seconds]

use ctsim::{RunOptions, Scenario, run};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "nginx-short-upstream".into());
    let sc = if name.ends_with(".toml") {
        Scenario::from_toml(&std::fs::read_to_string(&name)?)?
    } else {
        Scenario::builtin(&name).ok_or_else(|| {
            format!(
                "unknown scenario {name}; known: {}",
                Scenario::builtin_names().join(", ")
            )
        })?
    };
    let mut opt = RunOptions::for_scenario(&sc);
    if let Some(d) = args.next() {
        opt.duration_s = d.parse()?;
    }
    let tl = run(&sc, &opt, &mut |_| {})?;
    println!("{}", serde_json::to_string_pretty(&tl.summary)?);
    Ok(())
}
