//! The fault model: what can be broken and how a user names it. A plain
//! model that imports nothing else of snapstorm: attribution (which fault
//! explains an incident) is the engine's verdict, and each backend brings
//! its own injector.
//!
//! A fault is written `KIND@TIME[:DURATION][,key=value…]`, e.g.
//! `corrupt-pack@15s`, `server-restart@20s:5s`,
//! `network@10s:20s,latency=300ms,drop=10,error=10`, `revoke-client@30s,client=2`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a killed client stays cut off: long enough for its retries to
/// give up, so the snapshot in flight fails with its partial upload left behind.
pub const KILL_CUT: Duration = Duration::from_secs(10);

/// How long a `kill-client` waits for the client's upload to cut into
/// before it gives up.
pub const KILL_ARMED_FOR: Duration = Duration::from_secs(120);

/// The faults snapstorm can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Flip bytes in a random data pack file.
    CorruptPack,
    /// Delete a random data pack file.
    DeletePack,
    /// Delete a random index file.
    DeleteIndex,
    /// Stop the server (connections refused) for a while, then start it again.
    ServerRestart,
    /// Latency, dropped connections and HTTP 500s between clients and server.
    Network,
    /// Revoke a client's permission on the server while it runs.
    RevokeClient,
    /// Cut a client off in the middle of a snapshot; its partial upload stays.
    KillClient,
    /// GC that deletes unused data at once, while clients back up.
    AggressiveGc,
    /// GC over and over, concurrent with all clients.
    GcStorm,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        FaultKind::CorruptPack,
        FaultKind::DeletePack,
        FaultKind::DeleteIndex,
        FaultKind::ServerRestart,
        FaultKind::Network,
        FaultKind::RevokeClient,
        FaultKind::KillClient,
        FaultKind::AggressiveGc,
        FaultKind::GcStorm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::CorruptPack => "corrupt-pack",
            FaultKind::DeletePack => "delete-pack",
            FaultKind::DeleteIndex => "delete-index",
            FaultKind::ServerRestart => "server-restart",
            FaultKind::Network => "network",
            FaultKind::RevokeClient => "revoke-client",
            FaultKind::KillClient => "kill-client",
            FaultKind::AggressiveGc => "aggressive-gc",
            FaultKind::GcStorm => "gc-storm",
        }
    }

    /// One line for menus and `--help`.
    pub fn describe(self) -> &'static str {
        match self {
            FaultKind::CorruptPack => "flip bytes in a random data pack",
            FaultKind::DeletePack => "delete a random data pack",
            FaultKind::DeleteIndex => "delete a random index file",
            FaultKind::ServerRestart => "stop the server, start it again after DURATION",
            FaultKind::Network => "latency, dropped connections, HTTP 500s for DURATION",
            FaultKind::RevokeClient => "revoke a client on the server (for DURATION, or for good)",
            FaultKind::KillClient => "cut a client off in the middle of a snapshot",
            FaultKind::AggressiveGc => "GC with instant delete while clients back up",
            FaultKind::GcStorm => "GC over and over for DURATION",
        }
    }

    /// Damage to the repository's data: it stays until the end of the run.
    pub fn damages_data(self) -> bool {
        matches!(
            self,
            FaultKind::CorruptPack
                | FaultKind::DeletePack
                | FaultKind::DeleteIndex
                | FaultKind::AggressiveGc
        )
    }

    /// How long it lasts when no duration is given.
    pub fn default_duration(self) -> Option<Duration> {
        match self {
            FaultKind::ServerRestart => Some(Duration::from_secs(5)),
            FaultKind::Network | FaultKind::GcStorm => Some(Duration::from_secs(15)),
            _ => None,
        }
    }

    pub fn parse(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Settings of the network fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkFault {
    /// Added before every request is forwarded.
    pub latency: Duration,
    /// Share of requests whose connection is dropped, in percent.
    pub drop_percent: u8,
    /// Share of requests answered with HTTP 500, in percent.
    pub error_percent: u8,
}

impl Default for NetworkFault {
    fn default() -> Self {
        NetworkFault {
            latency: Duration::from_millis(200),
            drop_percent: 10,
            error_percent: 10,
        }
    }
}

/// One fault to inject, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    pub kind: FaultKind,
    /// Time into the run.
    pub at: Duration,
    pub duration: Option<Duration>,
    pub network: NetworkFault,
    /// `revoke-client` / `kill-client`: client number N (`client-N`)
    /// instead of a random one.
    pub client: Option<u32>,
}

impl FaultSpec {
    pub fn new(kind: FaultKind, at: Duration) -> Self {
        FaultSpec {
            kind,
            at,
            duration: kind.default_duration(),
            network: NetworkFault::default(),
            client: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault `{text}`: {problem}")]
pub struct FaultSpecError {
    pub text: String,
    pub problem: String,
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|e| format!("`{value}` is not a duration ({e}; write e.g. 15s, 2m)"))
}

fn parse_percent(key: &str, value: &str) -> Result<u8, String> {
    let number = value.trim_end_matches('%');
    match number.parse::<u8>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err(format!("`{key}={value}` is not a percentage (0..=100)")),
    }
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |problem: String| FaultSpecError {
            text: text.to_owned(),
            problem,
        };
        let mut parts = text.split(',');
        let head = parts.next().unwrap_or_default();
        let (kind, when) = head
            .split_once('@')
            .ok_or_else(|| fail("write KIND@TIME[:DURATION], e.g. corrupt-pack@15s".into()))?;
        let kind = FaultKind::parse(kind).ok_or_else(|| {
            let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
            fail(format!(
                "unknown kind `{kind}`; one of: {}",
                names.join(", ")
            ))
        })?;
        let (at, duration) = match when.split_once(':') {
            Some((at, duration)) => (at, Some(duration)),
            None => (when, None),
        };
        let mut spec = FaultSpec::new(kind, parse_duration(at).map_err(&fail)?);
        if let Some(duration) = duration {
            spec.duration = Some(parse_duration(duration).map_err(&fail)?);
        }
        for option in parts {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| fail(format!("`{option}`: options are key=value")))?;
            match key {
                "latency" => spec.network.latency = parse_duration(value).map_err(&fail)?,
                "drop" => spec.network.drop_percent = parse_percent(key, value).map_err(&fail)?,
                "error" => spec.network.error_percent = parse_percent(key, value).map_err(&fail)?,
                "client" => {
                    let number = value.trim_start_matches("client-");
                    let id = number
                        .parse::<u32>()
                        .map_err(|_| fail(format!("`client={value}` is not a client number")))?;
                    spec.client = Some(id);
                }
                _ => {
                    return Err(fail(format!(
                        "unknown option `{key}`; options are latency, drop, error (network) and client"
                    )));
                }
            }
        }
        Ok(spec)
    }
}

/// A `[[faults]]` entry of a scenario file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScenarioFault {
    pub kind: FaultKind,
    pub at: String,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub latency: Option<String>,
    #[serde(default)]
    pub drop_percent: Option<u8>,
    #[serde(default)]
    pub error_percent: Option<u8>,
    #[serde(default)]
    pub client: Option<u32>,
}

impl ScenarioFault {
    pub fn to_spec(&self) -> Result<FaultSpec, String> {
        let mut spec = FaultSpec::new(self.kind, parse_duration(&self.at)?);
        if let Some(duration) = &self.duration {
            spec.duration = Some(parse_duration(duration)?);
        }
        if let Some(latency) = &self.latency {
            spec.network.latency = parse_duration(latency)?;
        }
        for (key, value) in [
            ("drop-percent", self.drop_percent),
            ("error-percent", self.error_percent),
        ] {
            if value.is_some_and(|v| v > 100) {
                return Err(format!("`{key}` is not a percentage (0..=100)"));
            }
        }
        if let Some(p) = self.drop_percent {
            spec.network.drop_percent = p;
        }
        if let Some(p) = self.error_percent {
            spec.network.error_percent = p;
        }
        spec.client = self.client;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let spec: FaultSpec = "corrupt-pack@15s".parse().unwrap();
        assert_eq!(
            (spec.kind, spec.at, spec.duration),
            (FaultKind::CorruptPack, Duration::from_secs(15), None)
        );
        let spec: FaultSpec = "server-restart@20s:5s".parse().unwrap();
        assert_eq!(spec.duration, Some(Duration::from_secs(5)));
        let spec: FaultSpec = "network@1m:20s,latency=300ms,drop=5,error=20%"
            .parse()
            .unwrap();
        assert_eq!(spec.at, Duration::from_secs(60));
        assert_eq!(
            spec.network,
            NetworkFault {
                latency: Duration::from_millis(300),
                drop_percent: 5,
                error_percent: 20
            }
        );
        let spec: FaultSpec = "revoke-client@3s,client=client-2".parse().unwrap();
        assert_eq!(spec.client, Some(2));
        assert_eq!(
            "gc-storm@1s".parse::<FaultSpec>().unwrap().duration,
            Some(Duration::from_secs(15))
        );
    }

    #[test]
    fn bad_specs_name_the_problem() {
        let err = "corrupt-packs@15s"
            .parse::<FaultSpec>()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "fault `corrupt-packs@15s`: unknown kind `corrupt-packs`; one of: corrupt-pack,"
            ),
            "{err}"
        );
        let err = "corrupt-pack".parse::<FaultSpec>().unwrap_err().to_string();
        assert!(err.contains("write KIND@TIME"), "{err}");
        let err = "network@1s:2s,drop=150"
            .parse::<FaultSpec>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a percentage"), "{err}");
        let err = "server-restart@soon"
            .parse::<FaultSpec>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("`soon` is not a duration"), "{err}");
    }
}
