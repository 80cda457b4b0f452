//! Flags over configurations, without copying fields by hand.
//!
//! A command's flags are a struct of `Option`s whose names are the keys of the configuration
//! they set. Serialised to TOML, the absent flags vanish (TOML has no null), so one merge applies
//! every flag the user gave: `overlay(&Config::default(), &[flags_table(&flags)?])`. The defaults
//! live once, in the configuration's `Default`; [`show_defaults`] prints them in `--help`.

use anyhow::{bail, Context};
use serde::{de::DeserializeOwned, Serialize};

/// The given flags as a TOML table keyed by the configuration's names (absent ones left out).
pub fn flags_table(flags: &impl Serialize) -> anyhow::Result<toml::Table> {
    match toml::Value::try_from(flags).context("flags to TOML")? {
        toml::Value::Table(table) => Ok(table),
        other => bail!("flags serialise to {}, not a table", other.type_str()),
    }
}

/// `base` with each layer's keys set over it, in order (later layers win).
pub fn overlay<C: Serialize + DeserializeOwned>(
    base: &C,
    layers: &[toml::Table],
) -> anyhow::Result<C> {
    let mut merged = flags_table(base)?;
    for layer in layers {
        merged.extend(layer.clone());
    }
    toml::Value::Table(merged)
        .try_into()
        .context("invalid setting (check the names against --help)")
}

/// `cmd` with `[default: VALUE]` added to the help of every argument named like a key of
/// `defaults` (the configuration's `Default`, serialised), so `--help` shows the one true default.
pub fn show_defaults(mut cmd: clap::Command, defaults: &impl Serialize) -> clap::Command {
    let Ok(table) = flags_table(defaults) else {
        return cmd;
    };
    for (key, value) in table {
        if !cmd.get_arguments().any(|a| a.get_id() == key.as_str()) {
            continue;
        }
        let shown = match &value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(","),
            v => v.to_string(),
        };
        cmd = cmd.mut_arg(key.as_str(), |arg| {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let long = arg.get_long_help().map(|h| h.to_string());
            let arg = arg.help(
                format!("{help} [default: {shown}]")
                    .trim_start()
                    .to_string(),
            );
            match long {
                Some(long) => arg.long_help(format!("{long}\n\n[default: {shown}]")),
                None => arg,
            }
        });
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Config {
        nodes: usize,
        tau: f64,
        name: String,
    }
    impl Default for Config {
        fn default() -> Self {
            Config {
                nodes: 8,
                tau: 0.5,
                name: "a".into(),
            }
        }
    }

    #[derive(Serialize, clap::Parser, Default)]
    struct Flags {
        /// Nodes.
        #[arg(long)]
        nodes: Option<usize>,
        /// Temperature.
        #[arg(long)]
        tau: Option<f64>,
        #[arg(long)]
        #[serde(skip)]
        out: Option<String>,
    }

    #[test]
    fn given_flags_win_and_absent_flags_keep_the_default() {
        let flags = Flags {
            tau: Some(0.1),
            out: Some("x".into()),
            ..Default::default()
        };
        let table = flags_table(&flags).unwrap();
        assert_eq!(
            table.len(),
            1,
            "only the given, non-skipped flag: {table:?}"
        );
        let config = overlay(&Config::default(), &[table]).unwrap();
        assert_eq!(
            config,
            Config {
                tau: 0.1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let mut layer = toml::Table::new();
        layer.insert("nodez".into(), toml::Value::Integer(3));
        let err = format!("{:#}", overlay(&Config::default(), &[layer]).unwrap_err());
        assert!(err.contains("nodez"), "{err}");
    }

    #[test]
    fn help_shows_the_configuration_default() {
        use clap::CommandFactory;
        let mut cmd = show_defaults(Flags::command(), &Config::default());
        let help = cmd.render_help().to_string();
        assert!(help.contains("Temperature [default: 0.5]"), "{help}");
        assert!(help.contains("Nodes [default: 8]"), "{help}");
    }
}
