//! The agent's configuration loader (`server/src/config`): a TOML file, then `SLUICE_*`
//! environment variables, then `sluice serve` flags, as `Config::load` layers them, followed by
//! everything the agent derives from a valid configuration before it touches the machine (store
//! URL, addresses, CPU plan, locked-memory budget, log, housekeeping, hedging and group settings).
//!
//! Checks, beyond "no panic":
//! - what a flag can say, the environment variable can say too, with the same meaning: for each
//!   variable, `--name=value` parsing implies `SLUICE_NAME=value` parsing, to the same override;
//! - `Config::load` (reading the TOML from a file) agrees with the layers applied one by one: the
//!   same configuration, or an error for both;
//! - a configuration that validates gives a listen address and an advertised address.
//!
//! Input: three parts, each prefixed by its length (`u32`, little-endian): the TOML text, the
//! environment (`NAME=VALUE` lines) and the flags (one per line).
#![no_main]

use clap::{CommandFactory, FromArgMatches};
use libfuzzer_sys::fuzz_target;
use sluice_engine::store::StoreConfig;
use sluice_server::Config;
use sluice_server::cli::{Cli, Command};
use sluice_server::config::Overrides;

fuzz_target!(|data: &[u8]| {
    let parts = sluice_fuzz::split_parts(data, 3);
    let text = |index: usize| {
        parts
            .get(index)
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .unwrap_or_default()
    };
    let (toml, environment, flags) = (text(0), text(1), text(2));
    let environment: Vec<(String, String)> = environment
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let flags: Vec<&str> = flags.lines().collect();

    for (name, value) in &environment {
        flag_implies_environment(name, value);
    }

    let Some(from_flags) = serve_flags(&flags) else {
        return;
    };
    // `listen` is resolved (`ToSocketAddrs`): a name other than localhost would be a DNS query,
    // seconds each without a network. Such inputs stop at the checks above.
    if !layered_listen_is_local(&toml, &environment, &from_flags) {
        return;
    }
    let path = std::env::temp_dir().join(format!("sluice-fuzz-config-{}.toml", std::process::id()));
    std::fs::write(&path, &toml).expect("write the TOML layer to a file");
    let loaded = Config::load(Some(&path), environment.clone(), &from_flags);
    let layered = Config::from_toml_str(&toml, &path)
        .ok()
        .and_then(|mut config| {
            config.apply(&Overrides::from_environment(environment).ok()?);
            config.apply(&from_flags);
            config.validate().ok()?;
            Some(config)
        });
    assert_eq!(
        loaded.as_ref().ok(),
        layered.as_ref(),
        "Config::load and the layers disagree"
    );
    if let Some(config) = layered {
        derive_everything(&config);
    }
});

/// Whether the `listen` the layers end with resolves without DNS (an IP literal or localhost).
fn layered_listen_is_local(
    toml: &str,
    environment: &[(String, String)],
    flags: &Overrides,
) -> bool {
    let mut config =
        Config::from_toml_str(toml, std::path::Path::new("fuzz.toml")).unwrap_or_default();
    if let Ok(from_environment) = Overrides::from_environment(environment.to_vec()) {
        config.apply(&from_environment);
    }
    config.apply(flags);
    let listen = config.listen.as_str();
    listen.parse::<std::net::SocketAddr>().is_ok()
        || listen
            .rsplit_once(':')
            .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost"))
}

/// The `Overrides` of `sluice serve FLAGS…`, if clap accepts them.
fn serve_flags(flags: &[&str]) -> Option<Overrides> {
    // What `Cli::try_parse_from` does, with the command built once: building clap's command of
    // some fifty flags dominated the time of an input.
    thread_local! {
        static COMMAND: std::cell::RefCell<clap::Command> = std::cell::RefCell::new(Cli::command());
    }
    let argv = ["sluice", "serve"].into_iter().chain(flags.iter().copied());
    let matches = COMMAND
        .with_borrow_mut(|command| command.try_get_matches_from_mut(argv))
        .ok()?;
    match Cli::from_arg_matches(&matches).ok()?.command {
        Command::Serve(args) => Some(args.overrides),
        _ => None,
    }
}

/// `SLUICE_FLUSH_INTERVAL_MS=v` and `--flush-interval-ms=v` name the same setting.
fn flag_implies_environment(name: &str, value: &str) {
    let Some(key) = name.strip_prefix("SLUICE_") else {
        return;
    };
    if key.is_empty()
        || !key
            .bytes()
            .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'_')
    {
        return;
    }
    let flag = format!("--{}={value}", key.to_ascii_lowercase().replace('_', "-"));
    let Some(from_flag) = serve_flags(&[flag.as_str()]) else {
        return;
    };
    if from_flag == Overrides::default() {
        return;
    }
    let from_environment = Overrides::from_environment([(name.to_owned(), value.to_owned())])
        .unwrap_or_else(|error| panic!("{flag} is accepted but {name}={value:?} is not: {error}"));
    assert_eq!(
        from_environment, from_flag,
        "{name}={value:?} and {flag} differ"
    );
}

/// What `Agent::start` computes from a valid configuration before it starts any executor.
fn derive_everything(config: &Config) {
    config
        .listen_address()
        .expect("validate() checked the listen address");
    config
        .advertised_address()
        .expect("validate() checked the advertised address");
    if let Some(url) = &config.store {
        let _ = StoreConfig::from_url(url);
    }
    let _ = sluice_server::net::agent::plan_cpus(config, &[0, 1]);
    let executors = config.cpus.as_ref().map_or(2, |cpus| cpus.len() as u64) + 1;
    let _ = sluice_server::memlock::needed_bytes(executors, config.io_memory_bytes);
    let _ = config.log_config();
    let _ = config.housekeeping_config();
    let _ = config.retention_defaults();
    let _ = config.hedge_config();
    let _ = sluice_server::net::agent::group_config(config);
}
